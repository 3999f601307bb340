"""A cheap, strong audit on embeddings: K-fold cross-fitted classifiers, then confident learning.

With a good embedding (a pretrained network's, or a noisyfit backbone's trained on other classes) a
linear classifier separates the classes well, and it costs seconds where K-fold network training costs
an hour. Cross-fitting gives every example a prediction from a classifier that never saw its label:
the examples are split into K stratified folds, a classifier is fitted on K - 1 of them (with their
given, possibly wrong labels) and predicts the held-out one. Those out-of-fold probabilities go to the
detectors of :mod:`noisyfit.detect` (confident learning by default), as cleanlab's and Docta's own image
tutorials do with a pretrained network.

Classifiers (scikit-learn), behind a scaling fitted on the training folds: ``global`` (default) centres
every dimension and divides all of them by one common scale, which keeps the embedding's geometry;
``standard`` gives every dimension unit variance, which blows low-variance (dead, noise) dimensions up
to the size of the informative ones:

* ``logreg`` (default): multinomial logistic regression, L2 penalty ``C`` (lbfgs). ``C="auto"`` (default)
  chooses it inside each training split: scikit-learn's ``LogisticRegressionCV`` over :data:`AUTO_CS`, by
  the log-loss of the *given* labels on inner folds (the truth is never used). Measured on the 600-image
  embedder audit (``benchmarks/results/embedder/``): the fixed C = 0.1 of earlier versions over-fits 480
  examples in 256 dimensions (AUROC of the out-of-fold p(given label) 0.886); the inner choice picks
  0.003-0.01 there (AUROC 0.936);
* ``mlp``: one hidden layer of 256 ReLU units, L2 penalty ``alpha``, Adam, a fixed number of epochs;
* ``knn``: no fitting and no folds: each example's ``k`` nearest neighbours vote with their given labels and the
  vote shares are its probabilities, out of sample because an example never votes for itself
  (:mod:`noisyfit.detect.neighbors`, which says how this relates to SimiFeat). Neighbours by cosine distance
  after the same scaling (:func:`scale_features`): with ``global`` the embeddings are centred first, since the
  penultimate features of ReLU networks are all positive with a large shared mean that would otherwise dominate
  every cosine (our choice, not measured against uncentred cosine).

Why these defaults: a weaker fit of the training folds' wrong labels predicts them less, and one
common scale keeps the embedding's geometry. They were chosen on small exploratory runs (digits pixels,
planted errors on synthetic sets) whose numbers are not committed; the embedder benchmark
(``benchmarks/embedder_600.py``) is where they are to be measured, and the tests check only that planted
errors are found.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from noisyfit.detect.validation import DetectInputError, check_labels

CLASSIFIERS = ("logreg", "mlp", "knn")
#: neighbours of the ``knn`` classifier
KNN_K = 10
#: the grid of ``C="auto"``: half-decades from 1e-4 to 10
AUTO_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))
#: inner folds of ``C="auto"``
AUTO_FOLDS = 4


@dataclass
class CrossFit:
    """Out-of-fold probabilities of classifiers on embeddings.

    Attributes
    ----------
    pred_probs : ndarray (N, C) float32
        Row i: the fold classifier that did not train on example i.
    fold : ndarray (N,) int
        Which fold held each example out.
    seconds : float
    info : dict
        ``classifier``, its ``params``, ``folds``, ``seed``, ``dim`` and ``per_fold`` (``train``, ``held_out``,
        ``seconds``, ``train_agreement`` (fit to the given labels of its training folds),
        ``held_out_agreement_with_given``, ``held_out_accuracy_true`` when the truth is known, ``converged``).
    """

    pred_probs: np.ndarray
    fold: np.ndarray
    seconds: float
    info: dict = field(default_factory=dict)


class GlobalScaler:
    """Centre every dimension, then divide all of them by one common scale (the root mean variance).

    Unlike a per-dimension standardisation it keeps the embedding's geometry: a dimension that barely
    varies (a dead unit, noise) stays small instead of being blown up to the size of the informative ones.
    """

    def fit(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        self.scale_ = float(np.sqrt(np.mean(x.var(axis=0)))) or 1.0
        return self

    def transform(self, x):
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, x, y=None):
        return self.fit(x).transform(x)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


SCALINGS = ("global", "standard")


def scale_features(x, scaling: str = "global") -> np.ndarray:
    """``x`` scaled as the classifiers see it (fitted on all rows: ``knn`` and neighbour explanations fit nothing)."""
    from sklearn.preprocessing import StandardScaler

    if scaling not in SCALINGS:
        raise DetectInputError(f"scaling {scaling!r}: choose one of {', '.join(SCALINGS)}")
    return (GlobalScaler() if scaling == "global" else StandardScaler()).fit_transform(np.asarray(x, dtype=np.float64))


def neighbour_metric(x: np.ndarray) -> str:
    """Cosine, unless a row is all zeros (its cosine distance is undefined): then euclidean."""
    return "cosine" if (np.linalg.norm(x, axis=1) > 0).all() else "euclidean"


def make_classifier(name: str = "logreg", *, seed: int = 0, C: float | str = "auto", hidden: Sequence[int] = (256,),
                    alpha: float = 1e-3, max_iter: int | None = None, scaling: str = "global"):
    """A scikit-learn pipeline: scale the embeddings (``global`` or per-dimension ``standard``), then the classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if scaling not in SCALINGS:
        raise DetectInputError(f"scaling {scaling!r}: choose one of {', '.join(SCALINGS)}")

    if name == "logreg" and C == "auto":
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        clf = LogisticRegressionCV(Cs=list(AUTO_CS), cv=StratifiedKFold(AUTO_FOLDS, shuffle=True, random_state=seed),
                                   scoring="neg_log_loss", max_iter=max_iter or 1000)
    elif name == "logreg":
        if isinstance(C, str) or not C > 0:
            raise DetectInputError(f"logistic regression C must be positive or 'auto', got {C!r}")
        clf = LogisticRegression(C=C, max_iter=max_iter or 1000)
    elif name == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), alpha=alpha, max_iter=max_iter or 200,
                            random_state=seed)
    else:
        raise DetectInputError(f"classifier {name!r}: choose one of {', '.join(CLASSIFIERS)}")
    return make_pipeline(GlobalScaler() if scaling == "global" else StandardScaler(), clf)


def cross_fit(embeddings, labels, *, num_classes: int | None = None, folds: int = 5, classifier: str = "logreg",
              seed: int = 0, C: float | str = "auto", hidden: Sequence[int] = (256,), alpha: float = 1e-3,
              max_iter: int | None = None, scaling: str = "global", true_labels=None, k: int = KNN_K,
              graph=None, log: Callable[[str], None] | None = None) -> CrossFit:
    """K-fold out-of-fold class probabilities of a classifier on embeddings (``knn``: leave-one-out votes).

    Parameters
    ----------
    embeddings : array (N, D)
        One row per example.
    labels : array of int (N,)
        The given labels, ``0..num_classes-1``.
    num_classes : int, optional
        Default: ``labels.max() + 1``.
    folds : int
        K (stratified by the given label, shuffled with ``seed``).
    classifier : str
        ``logreg`` or ``mlp`` (see the module docstring); ``C`` for logreg (a number, or ``"auto"``: chosen on
        inner folds of each training split), ``hidden`` and ``alpha`` for mlp,
        ``max_iter`` for both; ``k`` for knn (which ignores ``folds``: see the module docstring), or
        its precomputed ``graph`` (:func:`noisyfit.detect.neighbors.knn_graph`, or what
        :func:`~noisyfit.detect.neighbors.as_knn_graph` takes).
    scaling : str
        ``global`` (centre, then one common scale for all dimensions: the embedding's geometry is kept) or
        ``standard`` (every dimension to unit variance).
    true_labels : array of int (N,), optional
        Known clean labels: per-fold accuracy against them in ``info``.
    log : callable, optional
        Gets one line per fold.

    Returns
    -------
    CrossFit
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    t0 = time.time()
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise DetectInputError(f"embeddings must be [N, D] rows, got shape {list(x.shape)}")
    y = check_labels(labels, num_classes)
    n = len(y)
    if len(x) != n:
        raise DetectInputError(f"{len(x)} embedding rows for {n} labels; row i must embed example i.")
    if not np.isfinite(x).all():
        raise DetectInputError("embeddings contain NaN or inf; recompute them (check the embedder's normalisation).")
    c = int(num_classes or (y.max() + 1))
    true = None if true_labels is None else np.asarray(true_labels, dtype=np.int64)
    if classifier == "knn":
        return _knn_votes(x, y, c, k=k, graph=graph, scaling=scaling, true=true, t0=t0, log=log)
    if not 2 <= folds <= n:
        raise DetectInputError(f"folds must be between 2 and the number of examples ({n}), got {folds}")
    counts = np.bincount(y, minlength=c)
    if counts.max() < folds:
        raise DetectInputError(f"every class has fewer than {folds} examples (at most {counts.max()}); use fewer "
                               "folds (--folds).")
    out = np.zeros((n, c), dtype=np.float32)
    fold_of = np.full(n, -1, dtype=np.int64)
    per_fold = []
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "the least populated class has only k members": rare classes are legitimate in an audit
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        splits = list(skf.split(np.zeros(n), y))
    for k, (tr, te) in enumerate(splits):
        tk = time.time()
        model = make_classifier(classifier, seed=seed + k, C=C, hidden=hidden, alpha=alpha, max_iter=max_iter,
                                scaling=scaling)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x[tr], y[tr])
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        probs = np.zeros((len(te), c), dtype=np.float64)
        probs[:, model.classes_] = model.predict_proba(x[te])  # a class absent from the training folds gets 0
        probs /= probs.sum(axis=1, keepdims=True)
        out[te] = probs
        fold_of[te] = k
        held_pred = probs.argmax(axis=1)
        info = {"fold": k, "train": len(tr), "held_out": len(te), "seconds": time.time() - tk,
                "train_agreement": float(np.mean(model.predict(x[tr]) == y[tr])),
                "held_out_agreement_with_given": float(np.mean(held_pred == y[te])),
                "held_out_accuracy_true": float(np.mean(held_pred == true[te])) if true is not None else None,
                "converged": converged}
        if hasattr(model[-1], "C_"):  # C="auto": the value the inner folds chose
            info["C_chosen"] = float(np.ravel(model[-1].C_)[0])
        per_fold.append(info)
        if log is not None:
            more = (f", accuracy against the true labels {info['held_out_accuracy_true']:.3f}"
                    if true is not None else "")
            log(f"cross-fit {classifier}: fold {k + 1}/{folds} in {info['seconds']:.1f} s: held-out agreement with "
                f"the given labels {info['held_out_agreement_with_given']:.3f} (training folds "
                f"{info['train_agreement']:.3f}){more}" + ("" if converged else "; not converged")
                + (f"; C chosen on inner folds: {info['C_chosen']:.3g}" if "C_chosen" in info else ""))
    params = {"C": C} if classifier == "logreg" else {"hidden": list(hidden), "alpha": alpha}
    params.update(max_iter=max_iter or (1000 if classifier == "logreg" else 200), scaling=scaling)
    return CrossFit(pred_probs=out, fold=fold_of, seconds=time.time() - t0,
                    info={"classifier": classifier, "params": params, "folds": folds, "seed": seed,
                          "dim": int(x.shape[1]), "per_fold": per_fold})


def _knn_votes(x: np.ndarray, y: np.ndarray, c: int, *, k: int, graph, scaling: str, true, t0: float,
               log) -> CrossFit:
    """The ``knn`` classifier: leave-one-out neighbour votes (fold -1: no folds)."""
    from noisyfit.detect.neighbors import as_knn_graph, knn_graph, neighbor_votes

    if graph is None:
        xs = scale_features(x, scaling)
        graph = knn_graph(xs, k, metric=neighbour_metric(xs))
    graph = as_knn_graph(graph)
    k = graph.k
    probs = neighbor_votes(graph, y, c).astype(np.float32)
    pred = probs.argmax(axis=1)  # ties: the lowest class index
    info = {"classifier": "knn", "params": {"k": k, "metric": graph.metric, "scaling": scaling},
            "folds": "leave-one-out",
            "seed": None, "dim": int(x.shape[1]), "per_fold": [],
            "agreement_with_given": float(np.mean(pred == y)),
            "accuracy_true": float(np.mean(pred == true)) if true is not None else None}
    if log is not None:
        more = f", accuracy against the true labels {info['accuracy_true']:.3f}" if true is not None else ""
        log(f"knn votes ({k} nearest neighbours, {graph.metric}) in {time.time() - t0:.1f} s: majority agreeing with the "
            f"given label {info['agreement_with_given']:.3f}{more}")
    return CrossFit(pred_probs=probs, fold=np.full(len(y), -1, dtype=np.int64), seconds=time.time() - t0, info=info)


def audit_embeddings(embeddings, labels=None, *, class_names: Sequence[str] | None = None,
                     ids: Sequence[str] | None = None, true_labels=None, index=None, folds: int = 5,
                     classifier: str = "logreg", seed: int = 0, C: float | str = "auto", k: int = KNN_K,
                     log: Callable[[str], None] | None = None,
                     **detector_kwargs):
    """Cross-fitted classifiers on embeddings, then confident learning: a :class:`~noisyfit.detect.LabelIssues`.

    Parameters
    ----------
    embeddings : array (N, D) or :class:`noisyfit.embed.Embeddings`
        An ``Embeddings`` brings its labels, class names, ids and true labels (arguments given here win).
    labels : array of int (N,)
    class_names, ids, true_labels, index
        As in :func:`~noisyfit.detect.audit_label_issues`.
    folds, classifier, seed, C, k, log
        As in :func:`cross_fit` (``k``: the neighbours of ``classifier="knn"``).
    **detector_kwargs
        For :func:`~noisyfit.detect.audit_label_issues` (``filter_by``, ``rank_by``, ``frac_noise``...).

    Returns
    -------
    LabelIssues
        ``info["cross_fit"]`` holds the classifier's per-fold figures, ``info["model_quality"]`` its
        agreement with the given labels (:func:`~noisyfit.detect.guardrails.model_quality`; a warning when near
        chance). For the out-of-fold probabilities themselves, call :func:`cross_fit`.
    """
    from noisyfit.detect.filter import audit_label_issues
    from noisyfit.detect.guardrails import model_quality

    if hasattr(embeddings, "x") and hasattr(embeddings, "labels"):
        e = embeddings
        labels = e.labels if labels is None else labels
        class_names = e.class_names if class_names is None else class_names
        ids = e.ids if ids is None else ids
        true_labels = e.true_labels if true_labels is None else true_labels
        index = e.index if index is None else index
        embeddings = e.x
    if labels is None:
        raise DetectInputError("audit_embeddings needs the given labels")
    num_classes = len(class_names) if class_names is not None else None
    cf = cross_fit(embeddings, labels, num_classes=num_classes, folds=folds, classifier=classifier, seed=seed, C=C,
                   true_labels=true_labels, k=k, log=log)
    issues = audit_label_issues(labels, cf.pred_probs, class_names=class_names, ids=ids, true_labels=true_labels,
                                index=index, check_quality=False, **detector_kwargs)  # model_quality below
    quality = model_quality(labels, cf.pred_probs, fold=cf.fold if classifier != "knn" else None,
                            true_labels=true_labels,
                            what=(f"the votes of {cf.info['params']['k']} nearest neighbours" if classifier == "knn"
                                  else f"cross-fitted {classifier}") + f" on {cf.info['dim']}-d embeddings", log=log)
    issues.info.update(cross_fit=cf.info, model_quality=quality)
    return issues
