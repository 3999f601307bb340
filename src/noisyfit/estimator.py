"""`NoisyClassifier`: any noisyfit method as a scikit-learn classifier on arrays.

``fit(X, y)`` runs the noisyfit :class:`~noisyfit.engine.trainer.Trainer` on the arrays (no config file, no
run folder) and keeps the method's per-sample verdict on the training labels; ``predict`` and
``predict_proba`` go through the same :class:`~noisyfit.predictor.Predictor` as ``noisyfit predict`` and a
run's ``model.pt``: the training statistics normalise raw inputs, ``Method.predict_logits`` predicts.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator, X="no_validation", y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)


#: scikit-learn estimator checks that NoisyClassifier is expected to fail, with the reason (passed as
#: ``expected_failed_checks`` to ``parametrize_with_checks`` / ``check_estimator`` in tests/test_estimator.py;
#: every other check of scikit-learn's suite runs and passes)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@contextmanager
def _global_rng_kept():
    """The Trainer seeds torch's and numpy's global generators; an estimator must leave the caller's alone."""
    import torch

    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)


#: the config setting each parameter makes (method_args / backbone_args go to method.args / model.args)
_PARAM_SETTINGS = {"method.name": "method", "model.backbone": "backbone", "optim.name": "optimizer", "optim.lr": "lr",
                   "optim.weight_decay": "weight_decay", "data.val_fraction": "val_fraction",
                   "train.epochs": "epochs", "train.batch_size": "batch_size", "train.seed": "random_state",
                   "train.device": "device", "train.precision": "precision", "train.progress": "verbose"}


class NoisyClassifier(ClassifierMixin, BaseEstimator):
    """A classifier trained with a noisy-label method, that also says which training labels look wrong.

    Parameters
    ----------
    method : str
        A registered method (``noisyfit list``): ``ce``, ``gce``, ``sce``, ``elr``, ``coteaching``,
        ``dividemix``, ...
    backbone : str
        ``mlp`` for feature rows (it also takes images, flattened); ``fastcnn``, ``preact_resnet18``,
        ``resnet34`` for images.
    epochs, batch_size : int
        Training length and mini-batch size (a batch larger than the training set is cut to it).
    lr : float
        Peak learning rate (cosine schedule; config ``optim.lr``).
    optimizer : {"sgd", "adam", "adamw"}
        SGD uses Nesterov momentum 0.9.
    weight_decay : float
    method_args : dict, optional
        The method's hyper-parameters (its docstring lists them with paper defaults), e.g. ``{"q": 0.7}`` for
        ``gce``.
    backbone_args : dict, optional
        Backbone options, e.g. ``{"hidden": [64]}`` for ``mlp``, ``{"widths": [64, 128, 128]}`` for ``fastcnn``.
    val_fraction : float
        Share of the training rows held out as a (noisy) validation split; the model of the epoch with the best
        validation accuracy is kept. Default 0: every row trains and the last epoch's model is kept.
    random_state : int, RandomState or None
        An int is the run's seed (noise-free runs: initialisation, batch order, augmentation, hold-out); None
        draws one from numpy's global generator. The caller's global torch and numpy generators are left as
        they were.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
    precision : str
        ``auto`` (fp32 on a CPU, bf16/fp16 on CUDA), ``fp32``, ``bf16``, ``fp16``.
    overrides : list of str, str or dict, optional
        Further config settings as ``key=value`` (``noisyfit train`` syntax), e.g.
        ``["optim.schedule=constant", "train.threads=2"]`` or ``{"optim.schedule": "constant"}``. A setting that
        a parameter above makes (``train.epochs``: ``epochs``) is refused here: set it through the parameter.
    verbose : bool
        Print one line per epoch (and a progress bar).

    Attributes
    ----------
    classes_ : ndarray
        The distinct labels of ``y`` (any values: integers, strings...), sorted; ``predict`` returns them.
    n_features_in_ : int
        Features per row (for images, values per image: H * W * C).
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.
    label_issues_ : ndarray of bool
        Per training row: the method flags its label as wrong (rows held out for validation: False).
    clean_scores_ : ndarray of float
        Per training row: the method's score of its label being right, higher = cleaner (held-out rows: NaN).
    suggested_labels_ : ndarray
        Per training row: the label the method would give (a value of ``classes_``; held-out rows: their own).
    noise_rate_ : float or None
        The method's estimate of the share of wrong labels.
    history_ : list of dict
        One row per epoch (loss, learning rate, validation accuracy when held out, seconds).
    predictor_ : noisyfit.predictor.Predictor
        The trained model with its input normalisation (``predictor_.save("model.pt")`` writes it for
        ``noisyfit predict``).

    Notes
    -----
    Inputs are arrays of feature rows ``[n_samples, n_features]`` (standardised inside with the training
    statistics, as ``noisyfit train`` does) or ``uint8`` images ``[n_samples, H, W, C]`` (``[n, H, W]`` for grey),
    normalised per channel and augmented (random crop and flip) during training.

    scikit-learn's estimator checks (``sklearn.utils.estimator_checks``, scikit-learn 1.9) all pass, on the fast
    setting of ``tests/test_estimator.py`` (``parametrize_with_checks``: 55 checks) and with the defaults (on a
    CPU): none is skipped or expected to fail here, so ``EXPECTED_FAILED_CHECKS`` is empty and no tag is changed.
    scikit-learn itself skips ``check_array_api_input`` unless the environment sets ``SCIPY_ARRAY_API=1``; with it
    set, that check passes too (NumPy inputs under array-API dispatch; the estimator declares no array-API
    support, its arrays go to torch). Determinism (fit twice with an int ``random_state``, same predictions,
    which ``check_fit_idempotent`` asserts) holds on a CPU; on CUDA, non-deterministic kernels may change the
    last digits.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> clf = NoisyClassifier("gce", epochs=30, backbone_args={"hidden": [256, 256]}, random_state=0)
    >>> cross_val_score(clf, X, y_noisy, cv=3)  # doctest: +SKIP
    >>> clf.fit(X, y_noisy).label_issues_.sum()  # doctest: +SKIP
    """

    def __init__(self, method="ce", backbone="mlp", *, epochs=30, batch_size=128, lr=0.05, optimizer="sgd",
                 weight_decay=5e-4, method_args=None, backbone_args=None, val_fraction=0.0, random_state=None,
                 device="auto", precision="auto", overrides=None, verbose=False):
        self.method = method
        self.backbone = backbone
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.method_args = method_args
        self.backbone_args = backbone_args
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.device = device
        self.precision = precision
        self.overrides = overrides
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _images(X) -> np.ndarray | None:
        """``X`` as uint8 NHWC images when it is an image array, else None (then it is a feature table).

        Image-shaped arrays that are not uint8, or uint8 arrays that look channels-first, are refused with the
        conversion to make (new users pass floats in [0, 1], or torch's [n, C, H, W] layout)."""
        if not isinstance(X, np.ndarray) or X.ndim not in (3, 4):
            return None
        shape = list(X.shape)
        if X.dtype != np.uint8:
            if X.dtype.kind not in "fiub":
                return None  # not numbers: scikit-learn's own check says so
            from noisyfit.predictor import uint8_conversion

            raise ValueError(f"X is a {X.dtype} array of shape {shape}: images must be uint8 [n, H, W, C] (or [n, H, W] "
                             f"for grey) with values 0..255; {uint8_conversion(X)}. "
                             "Feature rows are 2-D: [n_samples, n_features].")
        if X.ndim == 4 and X.shape[-1] not in (1, 3, 4) and X.shape[1] in (1, 3, 4):
            raise ValueError(f"X has shape {shape}: that looks channels-first [n, C, H, W]; images are "
                             "channels-last [n, H, W, C]: use X.transpose(0, 2, 3, 1).")
        return X[..., None] if X.ndim == 3 else X

    def _check_X(self, X, y=None, *, reset: bool):
        """X (and y, when fitting) checked as scikit-learn checks them; images keep their uint8 NHWC layout."""
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        images = self._images(X)
        if images is None:
            if not reset and getattr(self, "image_shape_", None) is not None:
                raise ValueError(f"X has shape {list(np.shape(X))}, but {type(self).__name__} was fitted on uint8 "
                                 f"images of shape [n, {', '.join(map(str, self.image_shape_))}].")
            if reset:
                X, y = _validate_data(self, X, y, dtype=np.float32)
                self.image_shape_ = None
            else:
                X = _validate_data(self, X, reset=False, dtype=np.float32)
            return np.array(X, dtype=np.float32, order="C"), y  # a writable copy: torch shares numpy memory
        if len(images) == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={images.shape}) while a minimum of 1 is required.")
        if reset:
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
            y = column_or_1d(y, warn=True)
            check_consistent_length(images, y)
            self.image_shape_ = tuple(int(s) for s in images.shape[1:])
            self.n_features_in_ = int(np.prod(self.image_shape_))
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif getattr(self, "image_shape_", None) != tuple(images.shape[1:]):
            want = (f"feature rows of {self.n_features_in_} features" if self.image_shape_ is None
                    else f"uint8 images of shape [n, {', '.join(map(str, self.image_shape_))}]")
            hint = ""
            if self.image_shape_ is not None and images.shape[3:] == self.image_shape_[2:]:  # only the size differs
                h, w = self.image_shape_[:2]
                hint = (f" Resize them as training folders are decoded: noisyfit.data.folder.resize_images(X, ({h}, "
                        f"{w})); or predict with predictor_.predict_proba(X), which does it.")
            raise ValueError(f"X has shape {list(images.shape)}, but {type(self).__name__} was fitted on {want}.{hint}")
        return np.array(images, order="C"), y

    def _config(self, seed: int):
        from noisyfit.config import load_config

        if not (isinstance(self.epochs, (int, np.integer)) and self.epochs >= 1):
            raise ValueError(f"epochs={self.epochs!r}: give a positive whole number of epochs.")
        values = {"random_state": seed, "verbose": bool(self.verbose)}  # parameters whose setting is not as given
        flags: dict = {"method": {"args": dict(self.method_args or {})},
                       "model": {"args": dict(self.backbone_args or {})}, "train": {"tensorboard": False}}
        for key, param in _PARAM_SETTINGS.items():
            section, name = key.split(".")
            flags.setdefault(section, {})[name] = values.get(param, getattr(self, param))
        return load_config(None, self._override_list(), flags=flags)

    def _override_list(self) -> list[str]:
        """``overrides`` as ``key=value`` strings (a list, one string, or a dict), none of them a setting that a
        parameter already makes (``train.epochs`` is ``epochs``): two values for one setting is an error."""
        over = self.overrides
        if over is None:
            return []
        if isinstance(over, str):
            over = [over]
        elif isinstance(over, dict):
            over = [f"{k}={v}" for k, v in over.items()]
        over = [str(o) for o in over]
        for o in over:
            key = o.split("=", 1)[0].strip()
            if key in _PARAM_SETTINGS or key == "train.tensorboard":
                owner = f"the parameter {_PARAM_SETTINGS[key]}=" if key in _PARAM_SETTINGS else "the estimator itself"
                raise ValueError(f"overrides sets {key}, which {owner} sets; use that instead of an override.")
        return over

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool):
            return int(rs)
        from sklearn.utils import check_random_state

        return int(check_random_state(rs).randint(0, 2**31 - 1))

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X, y):
        """Train on ``X`` with the (possibly wrong) labels ``y``; returns self.

        Parameters
        ----------
        X : array of shape [n_samples, n_features], or uint8 images [n_samples, H, W, C] / [n_samples, H, W]
        y : array-like of shape [n_samples]
            Labels of any values (integers, strings...); at least 2 distinct ones.
        """
        from noisyfit.data.labeled import DatasetSplits, LabeledData
        from noisyfit.engine.trainer import Trainer
        from noisyfit.predictor import PREDICTOR_FILE, Predictor, load_predictor

        x, y = self._check_X(X, y, reset=True)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has 1 class ({classes[0]!r}); a classifier needs at least 2 classes.")
        names = [str(c) for c in classes]
        columns = getattr(self, "feature_names_in_", None)  # a DataFrame's: the saved predictor matches them by name
        data = LabeledData(x, codes.reshape(-1), names, name=f"{type(self).__name__}.fit",
                           feature_names=None if columns is None or x.ndim != 2 else [str(c) for c in columns])
        seed = self._seed()
        cfg = self._config(seed)
        with _global_rng_kept(), tempfile.TemporaryDirectory(prefix="noisyfit-fit-") as tmp:
            # a validation split selects an epoch: the trainer keeps that epoch's weights in its run folder
            out = tmp if cfg.data.val_fraction > 0 else None
            cfg.train.checkpoint = out is not None
            trainer = Trainer(cfg, out, splits=DatasetSplits(train=data), command=[type(self).__name__ + ".fit"],
                              quiet=not self.verbose)  # warnings still show
            trainer.fit()
            if out is not None:
                self.predictor_ = load_predictor(f"{tmp}/{PREDICTOR_FILE}", device=trainer.device)
            else:
                self.predictor_ = Predictor.from_trainer(trainer)
        self.classes_ = classes
        method, labels, rows = trainer.method, trainer.data.train.labels, trainer.data.train_index
        n = len(x)
        scores = method.clean_scores(labels)
        flags = method.noisy_flags(labels)
        suggested = method.suggested_labels()
        self.clean_scores_ = np.full(n, np.nan)
        self._label_issues = np.zeros(n, dtype=bool)
        suggested_codes = codes.reshape(-1).copy()
        if scores is not None:
            self.clean_scores_[rows] = np.asarray(scores, dtype=np.float64)
        if flags is not None:
            self._label_issues[rows] = np.asarray(flags, dtype=bool)
        if suggested is not None:
            suggested_codes[rows] = np.asarray(suggested)
        self.suggested_labels_ = classes[suggested_codes]
        rate = method.estimated_noise_rate(labels)
        self.noise_rate_ = None if rate is None else float(rate)
        self.history_ = list(trainer.history)
        from noisyfit.engine.results import per_sample_outputs

        # what audit() explains the flags from: the run's per-sample outputs, as a run folder would hold them
        self.run_outputs_ = ({"method": {"name": self.method, "flag_rule": method.flag_reason(),
                                         "estimated_noise_rate": self.noise_rate_},
                              "data": {"num_classes": len(names), "class_names": names}},
                             per_sample_outputs(method, trainer.data))
        self._few_flags_said = False
        self._warn_many_flags()
        return self

    @property
    def label_issues_(self) -> np.ndarray:
        """Per training row: the method flags its label as wrong (see the class docstring). Reading it cautions,
        once per fit, when the method flagged under 1%."""
        check_is_fitted(self, "run_outputs_")
        self._warn_few_flags()
        return self._label_issues

    def audit(self):
        """The fitted method's flags on its training rows as a :class:`~noisyfit.detect.LabelIssues`: a reason per
        flagged row, ``.to_pandas()``, ``noisyfit.report.write_report(path, clf.audit(), inputs=X)``,
        ``noisyfit.detect.clean_labels``. ``index`` = row positions in the fitted ``X`` (rows held out by
        ``val_fraction`` are not audited); labels are indices into ``classes_``."""
        check_is_fitted(self, "run_outputs_")
        self._warn_few_flags()
        from noisyfit.detect.from_run import issues_from_outputs

        results, outputs = self.run_outputs_
        return issues_from_outputs(results, outputs, where=f"{type(self).__name__}({self.method!r})")

    def _warn_few_flags(self) -> None:
        """The audit's caution for under 1% flagged (noisyfit.detect.guardrails.FEW_FLAGS): a model that fits every
        given label flags none (in a new user's trial at the prompt, not a committed result, CE on embeddings of
        photos with 15% wrong labels flagged none, in silence). Said when the flags are read (label_issues_,
        audit()), not at fit: a fit inside cross_val_predict, whose flags nobody reads, stays quiet."""
        import warnings

        from noisyfit.detect.guardrails import FEW_FLAGS, QualityWarning

        if getattr(self, "_few_flags_said", True) or self.noise_rate_ is None or self.noise_rate_ >= FEW_FLAGS:
            return
        self._few_flags_said = True
        warnings.warn(QualityWarning(
            f"{type(self).__name__}({self.method!r}) estimates that {self.noise_rate_:.1%} of the training labels "
            "are wrong: its model fits (nearly) every given label, the wrong ones too, so it cannot point at them. "
            "Unless the labels really are that clean, "
            + ("use a method built to resist them (e.g. 'elr', 'gce'), or " if self.method == "ce" else "")
            + "audit held-out predictions (sklearn's cross_val_predict, then noisyfit.detect.audit_label_issues)."),
            stacklevel=3)

    def _warn_many_flags(self) -> None:
        """The audit's caution for over half flagged (noisyfit.detect.guardrails.MANY_FLAGS), at fit: a model too
        weak for the data flags hard examples as wrong, and predicts poorly too (in a new user's trial at the
        prompt, not a committed result, ELR on 600 photos flagged 45% for 20% wrong, in silence)."""
        import warnings

        from noisyfit.detect.guardrails import MANY_FLAGS, QualityWarning

        if self.noise_rate_ is not None and self.noise_rate_ > MANY_FLAGS:
            warnings.warn(QualityWarning(
                f"{type(self).__name__}({self.method!r}) estimates that {self.noise_rate_:.0%} of the training labels "
                "are wrong. Unless the labels really are that noisy, its model is too weak for these data to tell "
                "wrong labels from hard ones, and label_issues_ are mostly guesses: try more epochs, another "
                "backbone, or features from a network pretrained on similar data."), stacklevel=3)

    def _logits(self, X):
        check_is_fitted(self, "predictor_")
        x, _ = self._check_X(X, reset=False)
        return self.predictor_.logits(x)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``[n_samples, n_classes]``; column ``k`` belongs to ``classes_[k]``."""
        import torch

        return torch.softmax(self._logits(X).double(), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable label (a value of ``classes_``) of each row or image."""
        index = self._logits(X).argmax(1).numpy()
        return self.classes_[index]
