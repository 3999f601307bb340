"""Embedders from files: a finished noisyfit run, a ``torch.export`` program, TorchScript, or ONNX.

:func:`load_embedder` picks the loader from the file itself (a run folder; a zip archive that is a
``torch.export`` program or a TorchScript module; an ``.onnx`` file), never from the network. Each
embedder owns its input pipeline: uint8 images ``[N, H, W, C]`` become float ``[0, 1]`` NCHW tensors,
are resized with :func:`torch.nn.functional.interpolate` to the size the model expects, and normalised
with a per-channel mean and standard deviation. Those settings come, in this order, from the caller
(:class:`EmbedSettings`, the CLI's ``--input-size`` / ``--mean`` / ``--std``), from the file's own
``noisyfit`` metadata (written by :func:`save_embedder` and by ``noisyfit export-backbone``), from the
model's static input shape, and last from the defaults: the data's own image size and ImageNet's
mean and std (the convention of most pretrained image networks).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.data.labeled import DataError

#: name of the metadata entry (an extra file of torch.export / TorchScript archives, an ONNX metadata key)
META_KEY = "noisyfit_embedder.json"
META_SCHEMA = "noisyfit.embedder/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMATS = ("run", "torch.export", "torchscript", "onnx")
_SUFFIX_FORMAT = {".pt2": "torch.export", ".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript",
                  ".pt": "torchscript", ".pth": "torchscript", ".jit": "torchscript"}
_SUPPORTED = ("a noisyfit run folder (`noisyfit train --out`), a torch.export program (.pt2, "
              "torch.export.save), a TorchScript module (torch.jit.save) or an ONNX model (.onnx)")
ONNX_INSTALL = "pip install 'noisyfit[onnx]' (or: pip install onnxruntime onnx)"


class EmbedderError(DataError):
    """A model file that cannot be used as an embedder; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class EmbedSettings:
    """What the embedder expects as input, and how to batch it.

    Attributes
    ----------
    input_size : int or (height, width), optional
        Images are resized to this size (``F.interpolate``). None: the file's metadata, else the
        model's static input shape, else the data's own size.
    mean, std : sequence of float or str, optional
        Per-channel statistics in ``[0, 1]`` pixel units: ``x = (pixels / 255 - mean) / std``.
        ``"imagenet"``, ``"data"`` (the embedded images' own channel statistics, as noisyfit training
        does), ``"none"`` (no normalisation: inputs in ``[0, 1]``). None: the file's metadata, else
        ImageNet's. A model that takes ``0..255`` pixels: ``mean=0, std=1/255``.
    batch_size : int
        Examples per forward pass.
    device : str
        ``cpu`` or ``cuda`` for torch models (ONNX runs on onnxruntime's CPU provider).
    interpolation : str, optional
        ``bilinear`` (antialiased when shrinking), ``bicubic``, ``nearest`` or ``area``. None: the file's
        metadata, else ``bilinear``.
    """

    input_size: int | tuple[int, int] | None = None
    mean: Sequence[float] | str | None = None
    std: Sequence[float] | str | None = None
    batch_size: int = 256
    device: str = "cpu"
    interpolation: str | None = None


def parse_size(value) -> tuple[int, int] | None:
    """``224``, ``"224"``, ``"224,192"``, ``"224x192"`` or ``(224, 192)`` as ``(height, width)``."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", "").split(",") if p]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise EmbedderError(f"input size {value!r}: expected an int (e.g. 224) or HEIGHT,WIDTH (e.g. 224,192)")
    if isinstance(value, (int, np.integer)):
        value = [int(value)]
    value = list(value)
    if len(value) == 1:
        value = value * 2
    if len(value) != 2 or any(int(v) <= 0 for v in value):
        raise EmbedderError(f"input size {value!r}: expected a positive int or HEIGHT,WIDTH")
    return int(value[0]), int(value[1])


def parse_stats(value, name: str = "mean") -> tuple[float, ...] | str | None:
    """``"imagenet"``, ``"data"``, ``"none"``, ``"0.5,0.5,0.5"``, a float or a sequence (see EmbedSettings)."""
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("imagenet", "data", "none"):
            return word
        try:
            value = [float(v) for v in word.split(",") if v.strip()]
        except ValueError:
            raise EmbedderError(f"--{name} {value!r}: expected imagenet, data, none, or numbers in [0, 1] pixel "
                                "units separated by commas (e.g. 0.5,0.5,0.5)")
    if isinstance(value, (int, float, np.floating, np.integer)):
        value = [float(value)]
    out = tuple(float(v) for v in value)
    if not out:
        raise EmbedderError(f"--{name}: no numbers given")
    if name == "std" and any(v <= 0 for v in out):
        raise EmbedderError(f"--std {value!r}: every value must be positive")
    return out


def _resolve_stats(given, meta_value, default):
    """Caller's setting, else the file's metadata, else the default (``"none"`` = no normalisation)."""
    for v in (given, meta_value):
        if v is not None:
            return v if isinstance(v, str) else tuple(float(x) for x in np.ravel(v))
    return default


# ---------------------------------------------------------------------------------------------- embedder
class Embedder:
    """A model that turns examples into embedding rows, with its input pipeline.

    Call it on a batch: ``embedder(x)`` with ``x`` uint8 images ``[B, H, W, C]`` (or float feature rows
    ``[B, D]``) returns float32 ``[B, D_embedding]``. Use :func:`noisyfit.embed.embed_data` for a whole
    data set (batches, progress, ids).

    Attributes
    ----------
    path : Path
    kind : str
        One of ``FORMATS``.
    input_kind : str or None
        ``"image"``, ``"features"``, or None when the file does not say (then the data decides).
    input_size : (height, width) or None
    channels : int or None
        Channels the model takes (a grey image is repeated to 3 when the model takes 3).
    layout : str
        ``"nchw"`` (torch's) or ``"nhwc"`` (some converted ONNX models).
    mean, std : tuple of float, or ``"data"`` / ``"none"``
    meta : dict
        The file's noisyfit metadata (empty for foreign files).
    """

    def __init__(self, path: Path, kind: str, *, input_kind: str | None = None,
                 input_size: tuple[int, int] | None = None, channels: int | None = None, layout: str = "nchw",
                 mean=None, std=None, batch_size: int = 256, interpolation: str = "bilinear",
                 meta: dict | None = None, defaults: dict | None = None, fixed_batch: int | None = None):
        self.path, self.kind = Path(path), kind
        #: a model saved for one batch size only (a static batch dimension): it gets pieces of that size
        self.fixed_batch = fixed_batch
        self.input_kind, self.input_size, self.channels, self.layout = input_kind, input_size, channels, layout
        self.mean, self.std = mean, std
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise EmbedderError(f"batch size must be >= 1, got {batch_size}")
        if interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise EmbedderError(f"interpolation {interpolation!r}: choose bilinear, bicubic, nearest or area")
        self.interpolation = interpolation
        self.meta = dict(meta or {})
        self.defaults = dict(defaults or {})  # which settings fell back to a default, for the summary

    # ------------------------------------------------------------------ pipeline
    def prepare(self, x: np.ndarray) -> None:
        """Resolve the normalisation for data ``x`` (all of it, or a large sample).

        ``mean`` / ``std`` left at None become ImageNet's for images and no normalisation for feature
        rows; ``"data"`` becomes the channel statistics of the images ``x`` (uint8 NHWC).
        """
        image = x.ndim == 4
        for name in ("mean", "std"):
            if getattr(self, name) is None:
                setattr(self, name, (IMAGENET_MEAN if name == "mean" else IMAGENET_STD) if image else "none")
                self.defaults[name] = "imagenet" if image else "none"
        if self.mean == "data" or self.std == "data":
            from noisyfit.data.augment import channel_stats

            if not image:
                raise EmbedderError("--mean/--std data needs images; for feature rows give numbers or none")
            m, s = channel_stats(x)
            if self.mean == "data":
                self.mean = tuple(float(v) for v in m)
            if self.std == "data":
                self.std = tuple(float(v) for v in s)

    def _checked_batch(self, x) -> np.ndarray:
        """A batch as an array, or EmbedderError saying what to pass: uint8 images ``[N, H, W, C]`` of one size
        (float images would be read as 0..255 pixels), or float feature rows ``[N, D]``."""
        if not isinstance(x, np.ndarray):
            raise EmbedderError(f"got a {type(x).__name__}; pass an array: uint8 images [N, H, W, C] of one size "
                                "(np.stack them; resize first), or feature rows [N, D].")
        if x.ndim == 3 and x.dtype == np.uint8 and self.input_kind == "image" and x.shape[-1] in (1, 3, 4):
            raise EmbedderError(f"got an array of shape {list(x.shape)}: one image? Pass a batch, x[None] "
                                "([1, H, W, C]).")
        if x.ndim == 4 and x.dtype != np.uint8:
            raise EmbedderError(f"got images of dtype {x.dtype}; the embedder takes uint8 pixels 0..255 (it "
                                "normalises them itself): convert, e.g. (x * 255).round().astype(np.uint8) for floats "
                                "in [0, 1].")
        return x

    def check_input(self, x: np.ndarray, what: str = "the data") -> None:
        """Stop early when the data's kind (images / feature rows) is not what the model takes."""
        kind = "image" if x.ndim == 4 else "features"
        if self.input_kind is not None and kind != self.input_kind:
            raise EmbedderError(
                f"{self.path} takes {'images' if self.input_kind == 'image' else 'feature rows'}, but {what} "
                f"holds {'images' if kind == 'image' else 'feature rows'} of shape {list(x.shape[1:])}.")
        if kind == "image" and self.channels not in (None, x.shape[3]) and not (x.shape[3] == 1 and self.channels == 3):
            raise EmbedderError(f"{self.path} takes {self.channels}-channel images; {what} has {x.shape[3]} "
                                "channel(s).")

    def preprocess(self, x: np.ndarray) -> torch.Tensor:
        """One batch as the model's input tensor (float32, on the CPU)."""
        if x.ndim == 4:
            # a copy only when the array is read-only (np.asarray of a PIL image): torch warns on those
            t = torch.from_numpy(np.require(x, requirements=["C", "W"])).permute(0, 3, 1, 2).float().div_(255.0)
            if t.shape[1] == 1 and self.channels == 3:
                t = t.expand(-1, 3, -1, -1)
            if self.input_size is not None and tuple(t.shape[2:]) != tuple(self.input_size):
                kw = {"align_corners": False} if self.interpolation in ("bilinear", "bicubic") else {}
                if self.interpolation in ("bilinear", "bicubic"):
                    kw["antialias"] = True
                t = F.interpolate(t, size=tuple(self.input_size), mode=self.interpolation, **kw)
                if self.interpolation == "bicubic":
                    t = t.clamp_(0.0, 1.0)
            t = _normalise(t, self.mean, self.std, dim=1)
            if self.layout == "nhwc":
                t = t.permute(0, 2, 3, 1)
            return t.contiguous()
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return _normalise(t, self.mean, self.std, dim=1).contiguous()

    def forward(self, t: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self._checked_batch(x)
        if self.mean is None or self.std is None or "data" in (self.mean, self.std):
            self.prepare(x)  # embed_data prepares on the whole data set first; here the batch decides
        out = self._forward_pieces(self.preprocess(x))
        return np.asarray(out, dtype=np.float32).reshape(len(x), -1)

    def _forward_pieces(self, t: torch.Tensor) -> np.ndarray:
        """``forward`` in pieces of ``fixed_batch`` (the last padded with zeros) for a model that takes no other
        batch size; in one call otherwise."""
        b = self.fixed_batch
        if not b or len(t) == b:
            return self.forward(t)
        parts = []
        for s in range(0, len(t), b):
            piece = t[s:s + b]
            n = len(piece)
            if n < b:
                piece = torch.cat([piece, piece.new_zeros((b - n, *piece.shape[1:]))])
            parts.append(np.asarray(self.forward(piece)).reshape(b, -1)[:n])
        return np.concatenate(parts)

    def describe(self) -> dict:
        """What summary.json and the embeddings file record about this embedder."""
        listed = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        out = {"path": str(self.path), "format": self.kind, "input": self.input_kind,
               "input_size": list(self.input_size) if self.input_size else None, "channels": self.channels,
               "layout": self.layout, "mean": listed(self.mean), "std": listed(self.std),
               "interpolation": self.interpolation, "batch_size": self.batch_size, "defaults_used": self.defaults}
        for k in ("source", "run", "backbone", "checkpoint", "network", "network_index", "dataset", "trained_classes",
                  "feature_dim"):
            if k in self.meta:
                out[k] = self.meta[k]
        return out


def stats_text(v) -> str:
    """Per-channel statistics for a message: ``0.487,0.48,0.431`` (3 digits), or the word (``none``, ``data``)."""
    if isinstance(v, (list, tuple)):
        return ",".join(f"{float(x):.3g}" for x in v)
    return str(v)


def _normalise(t: torch.Tensor, mean, std, dim: int) -> torch.Tensor:
    if isinstance(mean, str) or mean is None:  # "none"
        mean = None
    if isinstance(std, str) or std is None:
        std = None
    shape = [1] * t.ndim
    if mean is not None:
        m = torch.tensor(mean, dtype=torch.float32)
        shape[dim] = max(1, len(m))
        if len(m) not in (1, t.shape[dim]):
            raise EmbedderError(f"mean has {len(m)} values for inputs with {t.shape[dim]} channels/features")
        t = t - m.view(shape)
    if std is not None:
        s = torch.tensor(std, dtype=torch.float32)
        shape[dim] = max(1, len(s))
        if len(s) not in (1, t.shape[dim]):
            raise EmbedderError(f"std has {len(s)} values for inputs with {t.shape[dim]} channels/features")
        t = t / s.view(shape)
    return t


class TorchEmbedder(Embedder):
    """A torch callable (an nn.Module, a torch.export program's module, a TorchScript module)."""

    def __init__(self, module, path, kind, *, device: str = "cpu", **kw):
        super().__init__(path, kind, **kw)
        try:
            self.device = torch.device(device or "cpu")
        except RuntimeError as err:
            raise EmbedderError(f"device {device!r}: {err}") from err
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EmbedderError(f"device {device!r}: CUDA is not available here; use --device cpu")
        self.module = module
        try:
            self.module = module.to(self.device)
        except (AttributeError, RuntimeError, NotImplementedError):
            pass
        if hasattr(self.module, "eval") and kind != "torch.export":  # exported programs are frozen in eval mode
            self.module.eval()

    def forward(self, t: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out = self.module(t.to(self.device))
        return _first_tensor(out).float().reshape(len(t), -1).cpu().numpy()


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and out:
        return _first_tensor(next(iter(out.values())))
    if isinstance(out, (list, tuple)) and out:
        return _first_tensor(out[0])
    raise EmbedderError(f"the model returned {type(out).__name__}, not a tensor of embeddings")


class OnnxEmbedder(Embedder):
    """An ONNX model run by onnxruntime (CPU provider); the first output is the embedding."""

    _DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}

    def __init__(self, session, path, **kw):
        super().__init__(path, "onnx", **kw)
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name, self.output_name = inp.name, session.get_outputs()[0].name
        if inp.type not in self._DTYPES:
            raise EmbedderError(f"{path}: input {inp.name!r} has type {inp.type}; noisyfit feeds float tensors")
        self.dtype = self._DTYPES[inp.type]

    def forward(self, t: torch.Tensor) -> np.ndarray:
        return self._run(t.numpy().astype(self.dtype, copy=False))

    def _run(self, arr: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self.output_name], {self.input_name: arr})[0]
        except Exception as err:  # onnxruntime raises its own exception types
            raise EmbedderError(f"{self.path}: onnxruntime failed on an input of shape {list(arr.shape)} ({err}). "
                                "Check --input-size and that the model takes NCHW float images.") from err
        return np.asarray(out, dtype=np.float32).reshape(len(arr), -1)


# ---------------------------------------------------------------------------------------------- loading
def detect_format(path: str | Path) -> str:
    """The embedder format of ``path`` from its content: one of ``FORMATS``.

    Raises
    ------
    EmbedderError
        Missing file, or a file that is none of the supported formats (the message lists them).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise EmbedderError(f"model {p}: no such file or folder; pass {_SUPPORTED}.")
    if p.is_dir():
        if any((p / f).is_file() for f in ("config.yaml", "checkpoint.pt", "results.json")):
            return "run"
        raise EmbedderError(f"model {p}: a folder without config.yaml / checkpoint.pt, so not a noisyfit run; "
                            f"pass {_SUPPORTED}.")
    if p.name in ("checkpoint.pt", "best_model.pt", "model.pt") and (p.parent / "config.yaml").is_file():
        return "run"
    if p.suffix.lower() == ".onnx":
        return "onnx"
    if p.suffix.lower() == ".npz":
        raise EmbedderError(f"model {p}: an .npz holds arrays, not a model; precomputed embeddings go to "
                            "`noisyfit audit --embedder FILE.npz`, a model to `noisyfit embed --model`.")
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise EmbedderError(f"model {p}: a damaged zip archive ({err}); save the model again.") from err
        if any(n.endswith("/archive_format") or n.endswith("serialized_exported_program.json")
               or (n.count("/") >= 2 and n.split("/")[1] == "models" and n.endswith(".json")) for n in names):
            return "torch.export"
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            raise EmbedderError(
                f"model {p}: a torch.save file (a state dict or a pickled module), which cannot be loaded without "
                "the code that built the model. Save the model with torch.export.save(torch.export.export("
                "model.eval(), (example_batch,)), 'model.pt2') or torch.jit.save(torch.jit.trace(model.eval(), "
                "example_batch), 'model.pt'), or use noisyfit.embed.save_embedder.")
    elif _looks_like_onnx(p):
        return "onnx"
    raise EmbedderError(f"model {p}: unknown format (suffix {p.suffix or 'none'!r}); pass {_SUPPORTED}.")


def _looks_like_onnx(p: Path) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint): byte 0x08, and names 'onnx' early."""
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower() or b"ai.onnx" in head)


def load_embedder(path: str | Path, settings: EmbedSettings | None = None, *, format: str | None = None,
                  checkpoint: str = "auto", network: int = 0, **kwargs) -> Embedder:
    """Load an embedder from a file or a run folder, choosing the loader by the file's content.

    Parameters
    ----------
    path : path
        A ``noisyfit train --out`` folder (or its ``checkpoint.pt`` / ``best_model.pt``): the backbone's
        features before the classifier head; a ``torch.export`` program (``.pt2``); a TorchScript
        module; an ONNX model (needs ``onnxruntime``: ``pip install 'noisyfit[onnx]'``).
    settings : EmbedSettings, optional
        Input size, normalisation, batch size, device. ``**kwargs`` set its fields directly
        (``load_embedder(path, input_size=224, mean="imagenet")``).
    format : str, optional
        Force one of ``FORMATS`` instead of detecting it.
    checkpoint : str
        Run folders: ``"auto"`` (default: the weights the run's ``model.pt`` predicts with, best_model.pt when
        the run selected an epoch, else the last), ``"last"`` (checkpoint.pt, the last epoch) or ``"best"``
        (best_model.pt, the best noisy-validation epoch).
    network : int
        Run folders of two-network methods: which network's backbone (0 = the first).

    Returns
    -------
    Embedder

    Raises
    ------
    EmbedderError
        Missing file, unknown format, onnxruntime not installed, a file the loader rejects.
    """
    settings = settings or EmbedSettings()
    for k, v in kwargs.items():
        if not hasattr(settings, k):
            raise TypeError(f"load_embedder() got an unexpected keyword argument {k!r}")
        setattr(settings, k, v)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise EmbedderError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    p = Path(path).expanduser()
    if fmt == "run":
        from noisyfit.embed.runs import run_embedder

        return run_embedder(p, settings, checkpoint=checkpoint, network=network)
    if fmt == "onnx":
        return _load_onnx(p, settings)
    return _load_torch(p, fmt, settings)


def _settings_kw(settings: EmbedSettings, meta: dict, static: dict) -> dict:
    """Embedder keyword arguments from the caller's settings, the file's metadata and its static shape."""
    defaults = {}
    input_kind = meta.get("input") or static.get("input")
    size = parse_size(settings.input_size)
    if size is None and meta.get("input_size"):
        size = parse_size(meta["input_size"])
    if size is None and static.get("input_size"):
        size = static["input_size"]
    if size is None and input_kind != "features":
        defaults["input_size"] = "the data's own size"
    # None = the default for the data's kind, resolved by Embedder.prepare (ImageNet's for images, none for rows)
    mean = _resolve_stats(parse_stats(settings.mean, "mean"), meta.get("mean"), None)
    std = _resolve_stats(parse_stats(settings.std, "std"), meta.get("std"), None)
    return dict(input_kind=input_kind, input_size=size, channels=meta.get("channels") or static.get("channels"),
                layout=static.get("layout", "nchw"), mean=mean, std=std, batch_size=settings.batch_size,
                interpolation=settings.interpolation or meta.get("interpolation") or "bilinear", meta=meta,
                defaults=defaults)


def _read_meta(raw, where: Path) -> dict:
    if raw in (None, "", b""):
        return {}
    try:
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        warnings.warn(f"{where}: its noisyfit metadata is not valid JSON; ignored", stacklevel=3)
        return {}
    return meta if isinstance(meta, dict) else {}


def _static_from_shape(shape: Sequence) -> dict:
    """Input kind, size, channels and layout from a model's input shape (ints where static)."""
    dims = [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape]
    out: dict = {}
    if len(dims) == 2:
        out["input"] = "features"
    elif len(dims) == 4:
        out["input"] = "image"
        if dims[3] in (1, 3) and dims[1] not in (1, 3):  # NHWC (a converted TF/Keras model)
            out["layout"], c, h, w = "nhwc", dims[3], dims[1], dims[2]
        else:
            c, h, w = dims[1], dims[2], dims[3]
        out["channels"] = c
        if h and w:
            out["input_size"] = (h, w)
    if dims and dims[0]:
        out["batch"] = dims[0]
    return out


def _load_torch(p: Path, fmt: str, settings: EmbedSettings) -> Embedder:
    extra = {META_KEY: ""}
    static: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if fmt == "torch.export":
                program = torch.export.load(str(p), extra_files=extra)
                module = program.module()
                static = _static_from_shape(_export_input_shape(program))
            else:
                module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except EmbedderError:
        raise
    except Exception as err:  # torch raises RuntimeError, ValueError, KeyError... on foreign or damaged files
        what = "torch.export program" if fmt == "torch.export" else "TorchScript module"
        raise EmbedderError(f"model {p}: cannot load it as a {what} ({type(err).__name__}: {err}).") from err
    meta = _read_meta(extra.get(META_KEY), p)
    # a program exported without a dynamic batch dimension takes only its example's batch size (its guard
    # refuses any other): it gets pieces of that size (TorchScript shapes are not recorded: None)
    fixed = static.pop("batch", None)
    return TorchEmbedder(module, p, fmt, device=settings.device, fixed_batch=fixed,
                         **_settings_kw(settings, meta, static))


def _export_input_shape(program) -> list:
    """The first user input's shape of an ExportedProgram (ints for static dimensions)."""
    try:
        name = program.graph_signature.user_inputs[0]
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
        return [d if isinstance(d, int) else None for d in node.meta["val"].shape]
    except (IndexError, StopIteration, KeyError, AttributeError):
        return []


def _import_onnxruntime(path: Path):
    try:
        import onnxruntime
    except ImportError as err:
        raise EmbedderError(f"model {path}: an ONNX model needs onnxruntime, which is not installed: "
                            f"{ONNX_INSTALL}.") from err
    return onnxruntime


def _load_onnx(p: Path, settings: EmbedSettings) -> Embedder:
    ort = _import_onnxruntime(p)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise EmbedderError(f"model {p}: onnxruntime cannot load it ({err}).") from err
    meta = _read_meta(session.get_modelmeta().custom_metadata_map.get(META_KEY), p)
    static = _static_from_shape(session.get_inputs()[0].shape)
    fixed = static.pop("batch", None)
    return OnnxEmbedder(session, p, fixed_batch=fixed, **_settings_kw(settings, meta, static))


# ---------------------------------------------------------------------------------------------- saving
def _format_for(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS[1:]:
            raise EmbedderError(f"export format {format!r}: choose torch.export, torchscript or onnx")
        return format
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise EmbedderError(f"{path}: cannot tell the format from the suffix {path.suffix or 'none'!r}; use .pt2 "
                            "(torch.export), .onnx (ONNX) or .pt / .ts (TorchScript)")
    return fmt


def save_embedder(module: torch.nn.Module, example: torch.Tensor, path: str | Path, *, format: str | None = None,
                  meta: dict | None = None) -> Path:
    """Write ``module`` (input batch -> embedding rows) as an embedder file that :func:`load_embedder` reads.

    Parameters
    ----------
    module : nn.Module
        Maps a normalised input batch (e.g. ``[B, 3, H, W]``) to ``[B, D]`` embeddings; put into eval mode.
    example : tensor
        An input batch of the right shape (its batch size does not matter: the batch dimension is saved
        as dynamic).
    path : path
        ``.pt2`` (torch.export), ``.onnx`` (ONNX, needs the ``onnx`` package), ``.pt`` / ``.ts``
        (TorchScript, traced); or any name with ``format``.
    format : str, optional
        ``torch.export``, ``torchscript`` or ``onnx``.
    meta : dict, optional
        Input settings to store with the model, read back as its defaults: ``input_size`` ([h, w]),
        ``channels``, ``mean``, ``std`` (per channel, [0, 1] units), ``input`` (``"image"`` or ``"features"``),
        and anything else worth recording (source run, backbone).

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = _format_for(path, format)
    module = module.eval()
    if example.shape[0] < 2:  # a batch of 1 would be specialised by the tracers
        example = torch.cat([example, example])
    meta = {"schema": META_SCHEMA, **(meta or {})}
    text = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "torch.export":
            batch = torch.export.Dim("batch", min=1, max=1 << 20)
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(path), extra_files={META_KEY: text})
        elif fmt == "torchscript":
            traced = torch.jit.trace(module, example)
            torch.jit.save(traced, str(path), _extra_files={META_KEY: text})
        else:
            try:
                import onnx
            except ImportError as err:
                raise EmbedderError(f"writing ONNX needs the onnx package: {ONNX_INSTALL}.") from err
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["input"],
                              output_names=["embedding"], opset_version=17,
                              dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}})
            model = onnx.load(str(path))
            entry = model.metadata_props.add()
            entry.key, entry.value = META_KEY, text
            onnx.save(model, str(path))
    return path
