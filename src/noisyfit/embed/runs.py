"""The backbone of a finished noisyfit run as an embedder, and its export to torch.export / ONNX / TorchScript.

A run folder holds the method's weights (``checkpoint.pt``: the last epoch; ``best_model.pt``: the best
noisy-validation epoch) and its ``config.yaml``. ``checkpoint="auto"`` (the default) takes the weights the run's
``model.pt`` predicts with: ``best_model.pt`` when the run selected an epoch, else the last. The backbone is rebuilt from the config and its weights
are found in the method's state dict by name (``net.``, ``nets.0.``, ``teacher.``...: the first match is
network 0), so any method works without being instantiated. The embedding is
``backbone.forward_features(x)``: the features before the classifier head.

The trainer normalises images with the channel mean and std of the run's training split. They are read
from the run's ``model.pt`` when it records them (``input``: kind, shape, mean, std), and otherwise
computed again from the run's data (the same split: same config, same seed).
:func:`export_backbone` stores them, the image size and the source in the exported file, which is then
self-contained: ``noisyfit embed DATA --model backbone.pt2`` needs neither the run nor its data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.embed.models import META_SCHEMA, EmbedderError, EmbedSettings, TorchEmbedder, _settings_kw, save_embedder


class FeatureExtractor(nn.Module):
    """``forward(x) = backbone.forward_features(x)``: the penultimate features, without the head."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        if hasattr(backbone, "head"):
            backbone.head = nn.Identity()  # unused by forward_features; not worth saving

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def _run_dir(path: Path, checkpoint: str) -> tuple[Path, str]:
    """The run folder and ``last`` / ``best``: a file names its own (model.pt: as ``auto``), ``auto`` resolves."""
    if path.is_file():  # runs/x/checkpoint.pt, best_model.pt or model.pt
        checkpoint = {"best_model.pt": "best", "checkpoint.pt": "last"}.get(path.name, "auto")
        path = path.parent
    if checkpoint == "auto":  # the weights `noisyfit predict` uses (noisyfit.predictor.predictor_state)
        checkpoint = "best" if (path / "best_model.pt").is_file() else "last"
    return path, checkpoint


def _read_config(run_dir: Path):
    import yaml

    from noisyfit.config import Config, ConfigError

    src = run_dir / "config.yaml"
    if not src.is_file():
        raise EmbedderError(f"run {run_dir}: no config.yaml, so the backbone cannot be rebuilt; pass the --out "
                            "folder of a `noisyfit train` run.")
    try:
        return Config.from_dict(yaml.safe_load(src.read_text()) or {}, source=str(src))
    except (yaml.YAMLError, ConfigError, OSError) as err:
        raise EmbedderError(f"run {run_dir}: cannot read config.yaml ({err}).") from err


def _method_state(run_dir: Path, checkpoint: str) -> dict:
    if checkpoint not in ("last", "best"):
        raise EmbedderError(f"checkpoint {checkpoint!r}: choose auto (the selected epoch's weights if the run has "
                            "them, else the last), last (checkpoint.pt) or best (best_model.pt)")
    path = run_dir / ("checkpoint.pt" if checkpoint == "last" else "best_model.pt")
    if not path.is_file():
        hint = ("the run has no noisy-validation split or saved no checkpoints; use --checkpoint last"
                if checkpoint == "best" else "the run saved no checkpoint (train.checkpoint=false?)")
        raise EmbedderError(f"run {run_dir}: no {path.name} ({hint}).")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a run folder is the user's own output: its checkpoint also pickles RNG states
            state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise EmbedderError(f"{path}: cannot read it ({type(err).__name__}: {err}); the file is damaged or "
                            "from another program.") from err
    if checkpoint == "best":  # written inside the evaluation: the averaged weights when the run kept an average
        return state
    average = state.get("weight_average")
    # a run with train.ema evaluated and kept the average, not the raw weights its optimiser left
    return {**state["method"], **average["average"]} if average else state["method"]


def _prefixes(state: dict, wanted: dict) -> list[str]:
    """Every prefix ``p`` such that ``state[p + k]`` has the shape of ``wanted[k]`` for every key ``k``."""
    first = next(iter(wanted))
    found = []
    for key in state:
        if key == first or key.endswith("." + first):
            p = key[: len(key) - len(first)]
            if all(p + k in state and tuple(state[p + k].shape) == tuple(v.shape) for k, v in wanted.items()):
                found.append(p)
    return found


def _recorded_input(run_dir: Path) -> dict | None:
    """Input kind, shape, normalisation and class names as the run's ``model.pt`` records them, if it does."""
    path = run_dir / "model.pt"
    if not path.is_file():
        return None
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
        inp = rec["input"]
        kind, shape = inp["kind"], [int(v) for v in inp["shape"]]
        mean = [float(v) for v in torch.as_tensor(inp["mean"]).reshape(-1)]
        std = [float(v) for v in torch.as_tensor(inp["std"]).reshape(-1)]
        names = [str(c) for c in rec["class_names"]]
    except Exception:  # another format or version: recompute from the data
        return None
    if kind == "image" and len(shape) == 3:
        return {"input": "image", "input_size": shape[:2], "channels": shape[2], "input_shape": (shape[2], *shape[:2]),
                "mean": mean, "std": std, "class_names": names}
    if kind == "features" and len(shape) == 1:
        return {"input": "features", "input_dim": shape[0], "input_shape": (shape[0],), "mean": mean, "std": std,
                "class_names": names}
    return None


def _run_data(cfg, run_dir: Path) -> LabeledData:
    from noisyfit.engine.run_data import prepare_run_data

    try:
        return prepare_run_data(cfg.data, cfg.train.seed).train
    except (DataError, OSError) as err:
        raise EmbedderError(
            f"run {run_dir}: its training data {cfg.data.dataset!r} cannot be loaded ({err}). The embedder needs "
            "it once for the image size and channel statistics the backbone was trained with; run where the data "
            "is (or give --data-dir), or export the backbone there with `noisyfit export-backbone`.") from err


def load_run_backbone(run_dir: str | Path, *, checkpoint: str = "auto", network: int = 0,
                      data: LabeledData | None = None) -> tuple[FeatureExtractor, dict]:
    """The backbone of a finished run (features before the head) and its input settings.

    Parameters
    ----------
    run_dir : path
        A ``noisyfit train --out`` folder, or its ``checkpoint.pt`` / ``best_model.pt``.
    checkpoint : str
        ``"auto"`` (default): the weights the run's ``model.pt`` predicts with (``best_model.pt`` when the
        run selected an epoch on its validation split, else the last epoch's); ``"last"`` or ``"best"``.
    network : int
        Which backbone when the method has several (Co-teaching, DivideMix, BKD...): 0 = the first.
    data : LabeledData, optional
        The run's training split, when the caller has it (skips loading the data again).

    Returns
    -------
    (FeatureExtractor, dict)
        The module in eval mode, and the metadata: ``input`` (image / features), ``input_size``,
        ``channels``, ``mean``, ``std`` (as the trainer normalised), ``feature_dim``, ``backbone``, ``run``...
    """
    from noisyfit.data.augment import channel_stats
    from noisyfit.engine.run_data import feature_stats
    from noisyfit.models.backbones import UnknownNameError, create_backbone

    run_dir, checkpoint = _run_dir(Path(run_dir).expanduser(), checkpoint)
    cfg = _read_config(run_dir)
    state = _method_state(run_dir, checkpoint)
    meta: dict = {"schema": META_SCHEMA, "source": "noisyfit run", "run": str(run_dir), "checkpoint": checkpoint,
                  "backbone": cfg.model.backbone, "model_args": dict(cfg.model.args), "dataset": cfg.data.dataset}
    recorded = _recorded_input(run_dir) if data is None else None
    if recorded is not None:
        input_shape = recorded.pop("input_shape")
        meta.update(recorded, trained_classes=recorded.pop("class_names"), normalisation_from="model.pt")
    else:
        train = data if data is not None else _run_data(cfg, run_dir)
        meta.update(trained_classes=list(train.class_names), normalisation_from="the run's training data")
        if train.is_image:
            mean, std = channel_stats(train.x)
            input_shape = (train.x.shape[3], train.x.shape[1], train.x.shape[2])
            meta.update(input="image", input_size=[int(input_shape[1]), int(input_shape[2])],
                        channels=int(input_shape[0]))
        else:
            mean, std = feature_stats(np.asarray(train.x, dtype=np.float32))
            input_shape = (train.x.shape[1],)
            meta.update(input="features", input_dim=int(input_shape[0]))
        meta.update(mean=[float(v) for v in mean], std=[float(v) for v in std])
    try:
        backbone = create_backbone(cfg.model.backbone, num_classes=len(meta["trained_classes"]),
                                   input_shape=input_shape, **cfg.model.args)
    except (UnknownNameError, ValueError, TypeError) as err:
        raise EmbedderError(f"run {run_dir}: cannot rebuild backbone {cfg.model.backbone!r} ({err}).") from err
    module = FeatureExtractor(backbone)
    wanted = module.backbone.state_dict()
    found = _prefixes(state, wanted)
    if not found:
        raise EmbedderError(f"run {run_dir}: no weights of a {cfg.model.backbone} backbone with model.args "
                            f"{dict(cfg.model.args)} in its {checkpoint} checkpoint; the run's config and weights "
                            "do not match.")
    if not 0 <= network < len(found):
        raise EmbedderError(f"run {run_dir}: network {network} asked for, but the method has {len(found)} "
                            f"backbone(s): {', '.join(p.rstrip('.') or '(top)' for p in found)}; use 0..{len(found) - 1}.")
    prefix = found[network]
    module.backbone.load_state_dict({k: state[prefix + k] for k in wanted}, strict=True)
    meta.update(network=prefix.rstrip(".") or "(top)", network_index=int(network),
                feature_dim=int(getattr(backbone, "feature_dim", 0)) or None)
    return module.eval(), meta


def run_embedder(run_dir: str | Path, settings: EmbedSettings | None = None, *, checkpoint: str = "auto",
                 network: int = 0, data: LabeledData | None = None) -> TorchEmbedder:
    """:func:`load_run_backbone` as an :class:`~noisyfit.embed.Embedder` (the run's size and normalisation)."""
    settings = settings or EmbedSettings()
    module, meta = load_run_backbone(run_dir, checkpoint=checkpoint, network=network, data=data)
    static = {"channels": meta.get("channels")}
    return TorchEmbedder(module, Path(meta["run"]), "run", device=settings.device,
                         **_settings_kw(settings, meta, static))


def export_backbone(run_dir: str | Path, out: str | Path, *, format: str | None = None, checkpoint: str = "auto",
                    network: int = 0, data: LabeledData | None = None) -> Path:
    """Write a run's backbone (features before the head) as a self-contained embedder file.

    Parameters
    ----------
    run_dir : path
        A finished ``noisyfit train --out`` folder.
    out : path
        ``.pt2`` (torch.export), ``.onnx`` (ONNX; needs ``pip install 'noisyfit[onnx]'``) or ``.pt`` /
        ``.ts`` (TorchScript).
    format, checkpoint, network, data
        As in :func:`~noisyfit.embed.save_embedder` and :func:`load_run_backbone`.

    Returns
    -------
    Path
        The file; it stores the input size and the channel mean / std of the run's training data, so
        :func:`~noisyfit.embed.load_embedder` feeds it as the run's trainer did.
    """
    module, meta = load_run_backbone(run_dir, checkpoint=checkpoint, network=network, data=data)
    if meta["input"] == "image":
        example = torch.zeros(2, meta["channels"], *meta["input_size"])
    else:
        example = torch.zeros(2, meta["input_dim"])
    return save_embedder(module, example, out, format=format, meta=meta)
