"""Saved models that predict on raw inputs: a run's ``model.pt`` and the :class:`Predictor` that reads it.

A finished run (``Trainer.fit`` with a run folder) writes ``model.pt`` next to ``results.json``. It holds
everything needed to turn raw inputs into class probabilities, without the config, the training data or
the run's other files:

* the method's name, hyper-parameters and backbone (the predict path is ``Method.predict_logits``, the
  one the trainer's test and validation accuracies use);
* the weights of the model the run selected: those of ``best_model.pt`` (the epoch with the best noisy
  validation accuracy) when the run held out a validation split and kept checkpoints, else those of the
  last epoch. Per-sample training state (ELR targets, DivideMix losses, final training probabilities, a
  method's extra state) is left out: it is not needed to predict;
* the input normalisation computed inside the trainer: per-channel mean and std (``[0, 1]`` units) for
  ``uint8`` NHWC images, per-feature mean and std for feature rows, with the raw input shape;
* the class names (label ``i`` is ``class_names[i]``), the autocast precision, evaluation batch size and
  test-time augmentation (``train.eval_tta``) of the run, and which weights these are (``selected`` or ``final``, the epoch, and the test and
  validation accuracies the run recorded for them).

The file is a ``torch.save`` of tensors and plain Python values: ``torch.load(path, weights_only=True)``
reads it without running pickled code. Predicting with the run's device, precision, batch size and
test-time augmentation (the defaults) reproduces the run's recorded test accuracy exactly
(``tests/test_predict.py``). A ``model.pt`` written before the file recorded the test-time augmentation
predicts without any, as it always did.

Example
-------
>>> from noisyfit.predictor import load_predictor
>>> model = load_predictor("runs/x")            # a run folder, or the path of a model.pt
>>> probs = model.predict_proba(images_uint8_nhwc)  # [N, C]
>>> names = [model.class_names[k] for k in probs.argmax(1)]
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from noisyfit import __version__
from noisyfit.data.augment import Augmenter
from noisyfit.data.labeled import DataError
from noisyfit.engine.precision import autocast_context
from noisyfit.engine.tta import TTA_VIEWS, with_tta

if TYPE_CHECKING:  # pragma: no cover
    from noisyfit.engine.trainer import Trainer

PREDICTOR_SCHEMA = "noisyfit.predictor/1"
#: the predictor's file name in a run folder
PREDICTOR_FILE = "model.pt"


def uint8_conversion(x: np.ndarray, name: str = "X") -> str:
    """The conversion of numeric non-uint8 images to raw pixels, as a user would write it: from [0, 1] floats
    (the usual mistake) or from 0..255 values; with the array's largest value, which decides between them."""
    top = float(np.nanmax(x)) if x.size else 0.0
    fix = (f"({name} * 255).round().astype(np.uint8)" if top <= 1.0
           else f"np.clip({name}, 0, 255).round().astype(np.uint8)")
    return f"its largest value is {top:g}, so convert with {fix}"
_EXTRA_STATE_SUFFIX = "_extra_state"  # torch's key of get_extra_state() in a state_dict


class PredictorError(DataError):
    """A run folder without a usable ``model.pt``, or inputs the model cannot take; the message says why."""


# ---------------------------------------------------------------------------------------------- writing
def _prediction_weights(state_dict: dict, method) -> dict[str, torch.Tensor]:
    """The entries of a method's state_dict that predicting needs: no per-sample or extra state."""
    skip = set(method.per_sample_state) | {"final_probs"}
    return {k: v.detach().cpu() for k, v in state_dict.items()
            if k not in skip and not k.endswith(_EXTRA_STATE_SUFFIX)}


def _float(v) -> float | None:
    return None if v is None else float(v)


def predictor_state(trainer: Trainer, results: dict | None = None, *, weights: str = "auto") -> dict:
    """The content of ``model.pt`` for a finished :class:`~noisyfit.engine.trainer.Trainer`.

    Parameters
    ----------
    trainer : Trainer
        After ``fit()``.
    results : dict, optional
        The run's results (its ``created`` time ties ``model.pt`` to ``results.json``).
    weights : {"auto", "selected", "final"}
        ``auto``: the selected epoch's weights (``best_model.pt``) when the run wrote them, else the last
        epoch's; ``final``: the last epoch's (the trainer's current state).
    """
    cfg, method = trainer.cfg, trainer.method
    best_file = trainer.out_dir / "best_model.pt" if trainer.out_dir is not None else None
    has_best = trainer.best.get("epoch") is not None and best_file is not None and best_file.is_file()
    if weights == "selected" and not has_best:
        raise ValueError("the run selected no model (no validation split, or no best_model.pt was written)")
    if weights not in ("auto", "selected", "final"):
        raise ValueError(f"weights={weights!r}: use 'auto', 'selected' or 'final'")
    last = trainer.history[-1] if trainer.history else {}
    if weights != "final" and has_best:
        state = torch.load(best_file, map_location="cpu", weights_only=False)  # written by this run
        record = {"weights": "selected", "epoch": trainer.best["epoch"], "test_acc": trainer.best["test_acc"],
                  "val_acc": trainer.best["val_acc"]}
    else:
        state = method.state_dict()
        record = {"weights": "final", "epoch": last.get("epoch"), "test_acc": last.get("test_acc"),
                  "val_acc": last.get("val_acc")}
    record = {"weights": record["weights"], "epoch": None if record["epoch"] is None else int(record["epoch"]),
              "test_acc": _float(record["test_acc"]), "val_acc": _float(record["val_acc"])}
    tr = trainer.data.train
    if trainer.is_image:
        normalisation = {"mean": trainer.augmenter.mean.detach().cpu().clone(),
                         "std": trainer.augmenter.std.detach().cpu().clone()}
        shape = [int(s) for s in tr.x.shape[1:]]  # H, W, C
    else:
        normalisation = {"mean": trainer.feature_mean.detach().cpu().clone(),
                         "std": trainer.feature_std.detach().cpu().clone()}
        shape = [int(tr.x.shape[1])]
    return {
        "schema": PREDICTOR_SCHEMA,
        "noisyfit_version": __version__,
        "method": {"name": cfg.method.name, "args": dict(cfg.method.args), "num_samples": len(tr)},
        "model": {"backbone": cfg.model.backbone, "args": dict(cfg.model.args)},
        "class_names": [str(c) for c in tr.class_names],
        "input": {"kind": "image" if trainer.is_image else "features", "shape": shape,
                  "channels_last": bool(trainer.is_image and cfg.train.channels_last),
                  # the views the run's accuracies averaged over (it checks that feature rows have none)
                  "eval_tta": str(cfg.train.eval_tta) if trainer.is_image else "none", **normalisation,
                  # feature rows that are a model's embeddings (an embeddings file of `noisyfit embed`): that
                  # embedder, so that new images can be embedded as the training rows were
                  "source": json.loads(json.dumps(getattr(tr, "source", None) or {}, default=str)) or None,
                  # a CSV's column names: new rows are matched to the columns by name, not by position
                  "feature_names": None if trainer.is_image or getattr(tr, "feature_names", None) is None
                  else [str(n) for n in tr.feature_names]},
        "precision": trainer.precision,
        "eval_batch_size": int(cfg.train.eval_batch_size),
        "record": {**record, "run_created": None if results is None else results.get("created")},
        "weights": _prediction_weights(state, method),
    }


def write_predictor(trainer: Trainer, results: dict | None = None) -> Path | None:
    """Write ``model.pt`` into the trainer's run folder (atomically); nothing without a run folder."""
    if trainer.out_dir is None:
        return None
    from noisyfit.engine.checkpoint import atomic_write_bytes

    state = predictor_state(trainer, results)
    path = trainer.out_dir / PREDICTOR_FILE
    atomic_write_bytes(path, lambda f: torch.save(state, f))
    return path


# ---------------------------------------------------------------------------------------------- reading
def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError(f"device {str(device)!r} but CUDA is not available here; use cpu")
    return dev


class Predictor:
    """A trained method with its input normalisation: raw inputs in, class probabilities out.

    Build one with :func:`load_predictor` (a run folder or ``model.pt``), :meth:`from_trainer` (a finished
    Trainer in memory) or ``Predictor(state)`` (the dict of :func:`predictor_state`).

    Parameters
    ----------
    state : dict
        The content of ``model.pt``.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
    precision : str
        ``auto``: the run's autocast precision (fp16 becomes fp32 on a CPU), or ``fp32``, ``bf16``, ``fp16``.
    tta : str
        Test-time augmentation of images: ``auto`` (the run's ``train.eval_tta``, so predictions match the
        accuracies the run recorded), ``none`` (one forward pass per image), ``mirror`` or
        ``mirror_translate`` (see :mod:`noisyfit.engine.tta`).

    Attributes
    ----------
    class_names : list of str
    is_image : bool
        True: inputs are ``uint8`` images ``[N, H, W, C]``; False: feature rows ``[N, D]``.
    input_shape : tuple of int
        ``(H, W, C)`` or ``(D,)``: one raw example.
    record : dict
        Which weights these are: ``weights`` (``selected`` or ``final``), ``epoch``, and the ``test_acc``
        and ``val_acc`` the run recorded for them.
    """

    def __init__(self, state: dict, *, device: str | torch.device = "cpu", precision: str = "auto",
                 tta: str = "auto"):
        if not isinstance(state, dict) or state.get("schema") != PREDICTOR_SCHEMA:
            got = state.get("schema") if isinstance(state, dict) else type(state).__name__
            raise PredictorError(f"not a noisyfit predictor (schema {got!r}, expected {PREDICTOR_SCHEMA!r})")
        from noisyfit.methods.base import get_method_class
        from noisyfit.models.backbones import create_backbone

        self._meta = {k: v for k, v in state.items() if k != "weights"}
        self.device = _resolve_device(device)
        self.class_names = list(state["class_names"])
        inp = state["input"]
        self.is_image = inp["kind"] == "image"
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self.record = dict(state.get("record") or {})
        #: for feature rows that were embeddings of images: the embedder and the image size they were made with
        self.input_source = dict(inp.get("source") or {}) or None
        #: the training table's column names (a CSV's header), or None: rows given with names are matched by them
        self.feature_names = [str(n) for n in inp["feature_names"]] if inp.get("feature_names") else None
        self.batch_size = int(state.get("eval_batch_size") or 1024)
        run_precision = state.get("precision", "fp32")
        if precision == "auto":
            precision = "fp32" if run_precision == "fp16" and self.device.type == "cpu" else run_precision
        if precision not in ("fp32", "bf16", "fp16"):
            raise PredictorError(f"precision={precision!r}: use auto, fp32, bf16 or fp16")
        self.precision = precision
        run_tta = str(inp.get("eval_tta", "none"))  # absent from files written before it was recorded
        self.tta = run_tta if tta == "auto" else str(tta)
        if self.tta not in TTA_VIEWS:
            raise PredictorError(f"tta={tta!r}: use auto, {', '.join(TTA_VIEWS)}")
        if self.tta != "none" and not self.is_image:
            raise PredictorError(f"tta={tta!r}: test-time augmentation takes images; this model takes feature rows")
        mean, std = inp["mean"].float(), inp["std"].float()
        if self.is_image:
            self._feature_mean = self._feature_std = None
            self._augmenter = Augmenter(mean, std, is_image=True, channels_last=bool(inp["channels_last"])
                                        ).to(self.device)
            backbone_shape = (self.input_shape[2], self.input_shape[0], self.input_shape[1])
        else:
            self._feature_mean, self._feature_std = mean.to(self.device), std.to(self.device)
            self._augmenter = Augmenter(torch.zeros(1), torch.ones(1), is_image=False, channels_last=False)
            backbone_shape = self.input_shape
        num_classes = len(self.class_names)
        spec, model = state["method"], state["model"]

        def make_backbone():
            return create_backbone(model["backbone"], num_classes=num_classes, input_shape=backbone_shape,
                                   **dict(model["args"]))

        cls = get_method_class(spec["name"])
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG alone
            method = cls(dict(spec["args"]), num_classes, int(spec["num_samples"]), make_backbone).to(self.device)
        if self.is_image and inp["channels_last"]:
            method = method.to(memory_format=torch.channels_last)
        expected_missing = set(method.state_dict()) - set(_prediction_weights(method.state_dict(), method))
        missing, unexpected = method.load_state_dict(state["weights"], strict=False)
        if unexpected or set(missing) - expected_missing:
            raise PredictorError(
                f"the weights do not fit method {spec['name']!r} of this noisyfit ({__version__}; the file was "
                f"written by {state.get('noisyfit_version')}): missing {sorted(set(missing) - expected_missing)}, "
                f"unexpected {sorted(unexpected)}. Predict with the version that trained it, or train again.")
        method.eval()
        self.method = method

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_trainer(cls, trainer: Trainer, *, weights: str = "final", device=None) -> Predictor:
        """The predictor of a finished Trainer (default: its last epoch's weights), on the trainer's device."""
        return cls(predictor_state(trainer, weights=weights), device=device or trainer.device)

    def state(self) -> dict:
        """The content of ``model.pt`` for this predictor (weights as they are now)."""
        return {**self._meta, "weights": _prediction_weights(self.method.state_dict(), self.method)}

    def save(self, path: str | Path) -> Path:
        from noisyfit.engine.checkpoint import atomic_write_bytes

        path = Path(path)
        state = self.state()
        atomic_write_bytes(path, lambda f: torch.save(state, f))
        return path

    def __reduce__(self):  # pickled as its state (the method's backbone factory is a closure)
        return _unpickle, (self.state(), str(self.device), self.precision, self.tta)

    def __repr__(self) -> str:
        kind = "images " + "x".join(map(str, self.input_shape)) if self.is_image else f"{self.input_shape[0]} features"
        return (f"Predictor(method={self._meta['method']['name']!r}, backbone={self._meta['model']['backbone']!r}, "
                f"{kind}, {len(self.class_names)} classes, weights={self.record.get('weights')!r})")

    # ------------------------------------------------------------------ inputs
    def describe_input(self) -> str:
        if self.is_image:
            h, w, c = self.input_shape
            return f"uint8 images of {h}x{w} pixels with {c} channel(s), as an [N, {h}, {w}, {c}] (NHWC) array"
        made = f" (embeddings by {self.embedder_path()})" if self.embedder_path() else ""
        return f"feature rows of {self.input_shape[0]} values{made}, as an [N, {self.input_shape[0]}] array"

    def _embedded(self, x) -> np.ndarray:
        """Images (files, a list of any sizes, a uint8 array) as the rows of the embedder that made this model's
        training rows: decoded at the training images' size, with the recorded settings, as `noisyfit predict`
        does. The embedder is loaded once."""
        from noisyfit.embed.for_model import decode_size, embedder_for

        if getattr(self, "_embedder", None) is None:
            self._embedder = embedder_for(self)
        size = decode_size(self, self._embedder)
        if size is None:
            raise PredictorError(f"{self._embedder.path} records no input size, and the training images' decoding "
                                 "size is not recorded: resize the images yourself and call "
                                 "noisyfit.embed.embedder_for(model)(images).")
        images = self._images_of_any_size(x, (size[0], size[1], 3))
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            return images  # check_inputs says what is wrong with it
        return self._embedder(images)

    def embedder_path(self) -> str | None:
        """The file of the embedder whose embeddings this model was trained on, as recorded, or None."""
        emb = (self.input_source or {}).get("embedder") or {}
        return emb.get("resolved_path") or emb.get("path")

    def _embed_hint(self) -> str:
        path = self.embedder_path()
        if path is None:
            return (" Images must become those feature rows first, the way the training rows were made (e.g. "
                    "`noisyfit predict RUN IMAGES --embedder FILE` with the embedder that made them).")
        return (f" Its training rows were embeddings by {path}: embed the images first, with "
                "`noisyfit predict RUN IMAGES` (it uses that embedder) or in Python "
                "`noisyfit.embed.embedder_for(model)(images)`.")

    def _images_of_any_size(self, x, size: tuple[int, int, int] | None = None):
        """Image files (paths), or a list of ``uint8`` images of any sizes, or a ``uint8`` array of another height
        and width, as one ``uint8 [N, H, W, C]`` array at ``size`` (default: the model's): decoded and resized
        (bicubic) as `noisyfit predict` and image-folder decoding do. Anything else is returned as it came."""
        import warnings

        from noisyfit.data.folder import decode_image_files, resize_images

        h, w, c = size or self.input_shape
        if isinstance(x, (str, Path)):
            x = [x]
        if isinstance(x, (list, tuple)) and x and all(isinstance(i, (str, Path)) for i in x):
            if c != 3:
                raise PredictorError(f"image files are decoded as RGB, but this model takes {c} channel(s)")
            images, resized, failed = decode_image_files(x, (h, w))  # as `noisyfit predict` decodes them
            if failed:
                raise PredictorError("cannot read as images: " + ", ".join(f"{x[k]} ({why})" for k, why in failed))
            if resized:
                warnings.warn(f"{resized} of {len(x)} image(s) resized to the model's {h}x{w} (bicubic, as "
                              "image folders are decoded)", stacklevel=_user_stacklevel())
            return images
        if isinstance(x, (list, tuple)) and x and all(isinstance(i, np.ndarray) and i.dtype == np.uint8
                                                      and i.ndim in (2, 3) for i in x):
            imgs = [i[..., None] if i.ndim == 2 else i for i in x]
            channels = sorted({i.shape[2] for i in imgs})
            if channels != [c]:
                raise PredictorError(f"images with {', '.join(map(str, channels))} channel(s); this model takes {c}: "
                                     "convert them first (e.g. PIL's Image.convert('RGB'), or load them as files).")
            resized = sum(i.shape[:2] != (h, w) for i in imgs)
            if resized:
                warnings.warn(f"{resized} of {len(imgs)} image(s) resized to the model's {h}x{w} (bicubic, as "
                              "image folders are decoded)", stacklevel=_user_stacklevel())
            return np.stack([resize_images(i[None], (h, w))[0] if i.shape[:2] != (h, w) else i for i in imgs])
        if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] == c and len(x) \
                and tuple(x.shape[1:3]) != (h, w):
            warnings.warn(f"{len(x)} image(s) of {x.shape[1]}x{x.shape[2]} resized to the model's {h}x{w} (bicubic, "
                          "as image folders are decoded)", stacklevel=_user_stacklevel())
            return resize_images(x, (h, w))
        return x

    def check_inputs(self, x) -> np.ndarray:
        """``x`` as the model takes it, or :class:`PredictorError` saying what it expected and what it got.

        An image model also takes image files (a path or a list of paths) and ``uint8`` images of other sizes (an
        array, or a list of arrays of mixed sizes): they are decoded and resized to its input size as
        `noisyfit predict` does, with a warning naming how many were resized."""
        if self.is_image:
            x = self._images_of_any_size(x)
        elif self.embedder_path() is not None and _looks_like_images(x):
            x = self._embedded(x)
        elif self.feature_names is not None and hasattr(x, "columns") and hasattr(x, "iloc"):  # a DataFrame
            # names as the CSV loader reads them: stripped, and the id/split/label columns of a table are no features
            from noisyfit.data.tabular import feature_columns

            names = [str(c).strip() for c in x.columns]
            x = x.iloc[:, self.column_order(names, features=feature_columns(names))]
        elif isinstance(x, (str, Path)):  # a table's file: read as an array it was 'an array of shape []'
            by_name = ", whose columns are matched by name" if self.feature_names is not None else ""
            raise PredictorError(f"got a path ({x}); this model takes {self.describe_input()}: read the file first "
                                 f"(e.g. pandas.read_csv(path){by_name}), or run `noisyfit predict RUN FILE`.")
        x = np.asarray(x)
        want = self.describe_input()
        if self.is_image:
            h, w, c = self.input_shape
            if x.ndim == 3 and c == 1 and x.dtype == np.uint8:
                x = x[..., None]
            if x.ndim == 2:
                raise PredictorError(f"got feature rows of shape {list(x.shape)}, but this model was trained on "
                                     f"images: it takes {want}.")
            if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, c):
                raise PredictorError(f"got an array of shape {list(x.shape)}; this model takes {want} (or image "
                                     "files, or uint8 images of any height and width, which it resizes). Convert "
                                     f"the channels to {c} first.")
            if x.dtype != np.uint8:
                hint = f"; {uint8_conversion(x, 'x')}" if x.dtype.kind in "fiub" else ""
                raise PredictorError(f"got images of dtype {x.dtype}; this model takes {want} with values 0..255 "
                                     f"(the raw pixels: the model normalises them itself){hint}.")
            return x
        d = self.input_shape[0]
        if x.ndim == 4 or (x.ndim == 3 and x.dtype == np.uint8):
            if self.embedder_path() is not None and x.dtype != np.uint8:
                hint = f"; {uint8_conversion(x, 'x')}" if x.dtype.kind in "fiub" else ""
                raise PredictorError(f"got images of dtype {x.dtype}: images for the embedder of this model are uint8 "
                                     f"[N, H, W, C] with values 0..255{hint}.")
            raise PredictorError(f"got images of shape {list(x.shape)}, but this model was trained on feature "
                                 f"rows: it takes {want}.{self._embed_hint()}")
        if x.ndim != 2 or x.shape[1] != d:
            one_row = " (one row? pass x.reshape(1, -1))" if x.ndim == 1 and len(x) == d else ""
            raise PredictorError(f"got an array of shape {list(x.shape)}; this model takes {want}{one_row}.")
        if x.dtype.kind not in "biuf":
            raise PredictorError(f"got values of dtype {x.dtype}; this model takes numeric {want}.")
        x = np.asarray(x, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise PredictorError(f"row {int(bad[0])} has NaN or infinite values ({bad.size} such row(s)); fill or "
                                 "drop them first.")
        return x

    def column_order(self, columns: list[str], *, features: list[str] | None = None) -> list[int]:
        """Where each of the model's feature columns is among ``columns`` (a table's names, in its order), or
        :class:`PredictorError` naming the missing and the unknown ones. A table whose columns are the training
        table's in another order is read by name: by position its rows would be predicted wrong in silence.
        ``features``: the names among ``columns`` that are features (default: all); the others, a table's id and
        label columns, are not called unknown."""
        if self.feature_names is None:
            return list(range(len(columns)))
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise PredictorError(f"column(s) {dup} appear twice; give each column its own name.")
        missing = [n for n in self.feature_names if n not in columns]
        unknown = [c for c in (columns if features is None else features) if c not in self.feature_names]
        if missing or unknown:
            raise PredictorError(
                f"the columns do not match the training table's {len(self.feature_names)} feature columns "
                f"({', '.join(self.feature_names[:8])}{', ...' if len(self.feature_names) > 8 else ''}): "
                + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                              f"not among them {unknown}" if unknown else "") if part)
                + ". Give the same columns (in any order; they are matched by name).")
        return [columns.index(n) for n in self.feature_names]

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def logits(self, x, *, batch_size: int | None = None) -> torch.Tensor:
        """``Method.predict_logits`` of raw inputs (averaged over the ``tta`` views), float32 ``[N, C]`` on the
        CPU, in the trainer's batches."""
        x = self.check_inputs(x)
        bs = int(batch_size or self.batch_size)
        data = torch.from_numpy(np.ascontiguousarray(x))
        if self.is_image:
            data = data.permute(0, 3, 1, 2).contiguous()  # stored as the trainer stores: uint8 NCHW
        else:  # standardised once with the training statistics, as the trainer does
            data = (data.to(self.device) - self._feature_mean) / self._feature_std
        outs = []
        predict = with_tta(self.method.predict_logits, self.tta)  # views of the normalised batch, as the trainer
        with autocast_context(self.device, self.precision):
            for s in range(0, len(data), bs):
                xb = self._augmenter.normalize(data[s:s + bs].to(self.device))
                outs.append(predict(xb).float().cpu())
        if not outs:
            return torch.zeros(0, len(self.class_names))
        return torch.cat(outs)

    def predict_proba(self, x, *, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``float64 [N, C]`` (softmax of the logits); column ``k`` is ``class_names[k]``."""
        return torch.softmax(self.logits(x, batch_size=batch_size).double(), dim=1).numpy()

    def predict(self, x, *, batch_size: int | None = None) -> np.ndarray:
        """Class indices ``int64 [N]`` (argmax of the logits, as the trainer's accuracies count them)."""
        return self.logits(x, batch_size=batch_size).argmax(1).numpy()


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the user's line: the first caller outside noisyfit and torch
    (a fixed level pointed at torch's no_grad wrapper when called through ``predict_proba``, a new-user trial)."""
    import sys

    import torch

    skip = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))
    frame, level = sys._getframe(1), 1  # level 1 = the function calling warnings.warn
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _looks_like_images(x) -> bool:
    """Image files, a list of image arrays, or a uint8 / image-shaped array (not feature rows)."""
    if isinstance(x, (str, Path)):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, (str, Path)) for i in x) or all(
            isinstance(i, np.ndarray) and i.ndim in (2, 3) for i in x)
    return isinstance(x, np.ndarray) and (x.ndim == 4 or (x.ndim == 3 and x.dtype == np.uint8))


def _unpickle(state: dict, device: str, precision: str, tta: str = "auto") -> Predictor:
    return Predictor(state, device=device, precision=precision, tta=tta)


def read_predictor_file(path: str | Path) -> dict:
    """The content of a ``model.pt``, read without running pickled code."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PredictorError(f"{path} not found.") from None
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as err:
        # not a torch file, truncated, or holding objects beyond tensors and plain values (torch's advice to load
        # those with weights_only=False is not passed on: a model file never needs it)
        detail = "" if isinstance(err, pickle.UnpicklingError) else f": {str(err).splitlines()[0]}" if str(err) else ""
        raise PredictorError(f"{path}: cannot read it as a noisyfit model file ({type(err).__name__}{detail}); "
                             "it is damaged or not a model.pt written by noisyfit.") from None
    if not isinstance(state, dict) or state.get("schema") != PREDICTOR_SCHEMA:
        raise PredictorError(f"{path}: not a noisyfit model file (no schema {PREDICTOR_SCHEMA!r}).")
    return state


def load_predictor(run: str | Path, *, device: str = "auto", precision: str = "auto", tta: str = "auto") -> Predictor:
    """The predictor of a finished run: ``run`` is its folder (``--out`` of ``noisyfit train``) or a ``model.pt``.

    Raises
    ------
    PredictorError
        The folder does not exist, holds no finished run, a run written before ``model.pt`` existed, or a
        ``model.pt`` of an earlier run in the same folder.
    """
    run = Path(run)
    if not run.exists():
        raise PredictorError(f"{run} not found; pass the --out folder of a finished `noisyfit train` run (or its "
                             f"{PREDICTOR_FILE}).")
    if run.is_file():
        return Predictor(read_predictor_file(run), device=device, precision=precision, tta=tta)
    model, results_path = run / PREDICTOR_FILE, run / "results.json"
    if not results_path.is_file():
        if (run / "checkpoint.pt").is_file():
            raise PredictorError(f"{run}: the run has not finished (checkpoint.pt but no results.json); finish it "
                                 f"with `noisyfit train --resume --out {run}`.")
        raise PredictorError(f"{run} is not a noisyfit run folder (no results.json, {PREDICTOR_FILE} or "
                             "checkpoint.pt); pass the --out folder of a finished `noisyfit train` run.")
    if not model.is_file():
        raise PredictorError(f"{run}: the run finished without {PREDICTOR_FILE} (a noisyfit from before `noisyfit "
                             "predict` trained it); train it again to get one: `noisyfit train --config "
                             f"{run / 'config.yaml'} --out NEW_FOLDER`.")
    state = read_predictor_file(model)
    try:
        created = json.loads(results_path.read_text()).get("created")
    except (OSError, ValueError):
        created = None
    written_for = (state.get("record") or {}).get("run_created")
    if created is not None and written_for is not None and created != written_for:
        raise PredictorError(f"{model} belongs to an earlier run in this folder (written for the run of "
                             f"{written_for}, results.json is from {created}); train again into a new folder.")
    return Predictor(state, device=device, precision=precision, tta=tta)
