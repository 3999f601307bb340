"""Run configuration: dataclasses, YAML presets and ``key=value`` overrides.

A config is resolved once (defaults <- YAML preset <- command-line flags <- overrides) and written
next to the run as ``config.yaml``, so that ``noisyfit train --config runs/x/config.yaml`` repeats it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad config file, key or value; the message names it and the fix."""


@dataclass
class DataConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    #: synthetic noise spec applied to the training labels, e.g. "sym:0.4"; None keeps the given labels
    noise: str | None = None
    #: an .npz written by `noisyfit noise`, replacing the training labels
    noisy_labels_file: str | None = None
    #: fraction of the (noisy) training set held out for model selection; never the test set
    val_fraction: float = 0.05
    #: keep only the first N training samples after shuffling (quick runs); None keeps all
    train_subset: int | None = None
    label_column: str = "label"
    #: image size policy: None keeps uniform folders as they are and resizes a mixed-size folder to its
    #: median height and width; an int (square) or [h, w] resizes every image to that size
    image_size: int | list | None = None
    #: image folders: auto streams from disk when the decoded images would exceed memory_budget_mb; true always
    #: streams (decoded in worker processes while training); false decodes everything into memory first
    stream: str = "auto"
    #: MiB of decoded images above which stream=auto streams; None: a quarter of this machine's memory
    memory_budget_mb: float | None = None
    #: decoding processes for streamed data; None: min(4, CPU count); 0 decodes in the training process
    workers: int | None = None


@dataclass
class ModelConfig:
    backbone: str = "mlp"
    #: backbone-specific options, e.g. {"widths": [64, 256, 256]} for fastcnn
    args: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple = (0.9, 0.999)
    #: constant | cosine | linear | step | cosine_restarts | cosine_periodic | triangle; stepped every iteration
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    milestones: list = field(default_factory=list)  # epochs, for "step"
    gamma: float = 0.1
    restart_period: float = 10.0  # epochs: the period of "cosine_restarts", T_max of "cosine_periodic"
    #: "triangle": [start, peak_at, end]: the lr factor rises linearly from start to 1 over the first peak_at
    #: of the run, then falls linearly to end (airbench94: 0.2, 0.23, 0.07); it is its own warm-up
    triangle: list = field(default_factory=lambda: [0.2, 0.23, 0.07])
    grad_clip: float | None = None
    #: learning rate of BatchNorm biases = lr x this, their weight decay / this (airbench94: 64; 1 = off)
    bn_bias_lr_scale: float = 1.0
    #: learning rate of the backbones' linear heads = lr x this, their weight decay / this (airbench94_muon:
    #: 0.67 / 0.053; 1 = off)
    head_lr_scale: float = 1.0
    #: the whitening stem's bias: "schedule" follows the run's lr schedule; "decay" falls linearly from its lr
    #: to 0 over the epochs it trains (model.args.whiten_bias_epochs), as in airbench94_muon
    whiten_bias_lr: str = "schedule"
    #: name=muon (noisyfit.engine.muon): Muon on every trainable 4-D tensor (conv filters), with these settings;
    #: SGD (lr, momentum, nesterov, weight_decay above) on everything else. Defaults: airbench94_muon's
    muon_lr: float = 0.24
    muon_momentum: float = 0.6
    muon_ns_steps: int = 3
    muon_ns_dtype: str = "bf16"  # bf16 | fp32 | fp64: the Newton-Schulz arithmetic
    muon_normalize: bool = True  # rescale each filter bank to norm sqrt(c_out) before its step


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 1024
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    seed: int = 0
    threads: int | None = None
    strong_policy: str = "autoaugment"  # autoaugment | randaugment
    #: "image": every image draws its own (sub-)policy, as the official torchvision pipelines do;
    #: "batch": kornia's one draw per call (faster; what noisyfit did before this key existed)
    strong_draw: str = "image"
    #: evaluate test / validation accuracy every N epochs (and always at the last)
    eval_every: int = 1
    #: at each evaluated epoch, an eval-mode pass over the training set records how well the model fits
    #: the given labels (``fit_given``) and, when the true labels are known, on the correctly labelled
    #: (``fit_clean``) and the mislabelled samples (``memorised``: argmax = the wrong given label)
    track_fit: bool = False
    checkpoint: bool = True
    #: also checkpoint inside an epoch once this many minutes have passed since the last checkpoint, so a
    #: killed run loses at most that much work (0 = at epoch ends only; single process only, not DDP)
    checkpoint_minutes: float = 5.0
    tensorboard: bool = True
    progress: bool = True
    #: pixels of reflect padding for the random-crop translation of image views (airbench94: 2)
    crop_pad: int = 4
    #: horizontal flips of training views: random | alternate (airbench94: each image's first flip drawn
    #: once, then mirrored every other epoch; noisyfit.data.altflip)
    flip: str = "random"
    #: evaluate (and keep) averaged weights: none | ema | lookahead (airbench94; noisyfit.engine.ema), updated
    #: every ema_every steps with decay ema_decay * progress**ema_ramp
    ema: str = "none"
    ema_decay: float = 0.95 ** 5
    ema_every: int = 5
    ema_ramp: float = 3.0
    #: test-time augmentation of validation/test accuracy: none | mirror | mirror_translate (noisyfit.engine.tta)
    eval_tta: str = "none"


@dataclass
class MethodConfig:
    name: str = "ce"
    #: method hyper-parameters (each method documents its own, with paper defaults)
    args: dict = field(default_factory=dict)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "config") -> "Config":
        cfg = cls()
        _merge_into(cfg, d or {}, source)
        return cfg

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def coerce_value(obj: Any, key: str, value: Any, where: str) -> Any:
    """Give a value the type of the dataclass default it replaces (YAML reads ``5e-4`` as a string)."""
    cur = getattr(obj, key)
    if value is None or cur is None:
        if isinstance(value, str) and isinstance(cur, type(None)):
            # Optional numeric fields (threads, train_subset, grad_clip): accept numbers written as text.
            for cast in (int, float):
                try:
                    return cast(value)
                except ValueError:
                    pass
        return value
    try:
        if isinstance(cur, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(cur, int) and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(cur, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: {value!r} is not a valid {type(cur).__name__}") from None
    return value


def _merge_into(obj: Any, d: dict, where: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in d.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(names)}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            _merge_into(cur, value, f"{where}.{key}")
        elif isinstance(cur, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {value!r}")
            cur.update(value)
        else:
            setattr(obj, key, coerce_value(obj, key, value, where))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                flags: dict | None = None) -> Config:
    """Defaults, then the YAML file, then ``flags`` (e.g. CLI options), then ``key=value`` overrides.

    Overrides use dotted paths, e.g. ``train.epochs=5``, ``method.args.q=0.7``,
    ``model.args.widths=[64,128,128]``; values are parsed as YAML.
    """
    cfg = Config()
    if path is not None:
        for p, d in _yaml_chain(resolve_preset(path)):
            _merge_into(cfg, d, str(p))
    if flags:
        _merge_into(cfg, flags, "command line")
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


PRESET_DIR = Path(__file__).with_name("configs")


def list_presets() -> list[str]:
    return sorted(str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml"))


def resolve_preset(path: str | Path) -> Path:
    """A YAML path, or the name of a packaged preset such as ``ce/cpu-cifar10n``."""
    p = Path(path)
    if p.exists():
        return p
    packaged = PRESET_DIR / f"{path}.yaml"
    if packaged.exists():
        return packaged
    import difflib

    close = difflib.get_close_matches(str(path), list_presets(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"config {path} is neither a file nor a preset.{hint} Presets: {', '.join(list_presets())}")


def _yaml_chain(p: Path, seen: tuple = ()) -> list[tuple[Path, dict]]:
    """The file and the files it ``inherit``s from, most general first."""
    if p.resolve() in seen:
        raise ConfigError(f"config {p}: 'inherit' forms a cycle")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    parent = d.pop("inherit", None)
    if parent is None:
        return [(p, d)]
    base = p.parent / parent
    if not base.exists():
        base = resolve_preset(parent)
    return _yaml_chain(base, seen + (p.resolve(),)) + [(p, d)]


_FLOAT_WITHOUT_DOT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def apply_override(cfg: Config, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. train.epochs=5")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _FLOAT_WITHOUT_DOT.fullmatch(value.strip()):
        # YAML 1.1 reads 5e-3 as a string (it wants 5.0e-3); typed settings convert it, free ones (model.args,
        # a method's extra keys) kept the string
        value = float(value)
    parts = key.strip().split(".")
    target: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(target, dict):
            target = target.setdefault(part, {})
            continue
        if not hasattr(target, part):
            raise ConfigError(f"override {item!r}: unknown key {'.'.join(parts[:i + 1])!r}")
        target = getattr(target, part)
    leaf = parts[-1]
    if isinstance(target, dict):
        target[leaf] = value
    elif dataclasses.is_dataclass(target) and leaf in {f.name for f in dataclasses.fields(target)}:
        if dataclasses.is_dataclass(getattr(target, leaf)):
            raise ConfigError(f"override {item!r}: {key!r} is a section; set one of its keys, e.g. {key}.<key>=...")
        setattr(target, leaf, coerce_value(target, leaf, value, "override " + ".".join(parts[:-1])))
    else:
        valid = ", ".join(f.name for f in dataclasses.fields(target)) if dataclasses.is_dataclass(target) else ""
        raise ConfigError(f"override {item!r}: unknown key {key!r}; valid here: {valid}")


def check_numbers(cfg: "Config") -> None:
    """Every numeric setting with a range (:data:`noisyfit.ranges.SETTING_RANGES`) inside it, else one
    ConfigError naming each value out of range. Needs no data: the trainer calls it before loading any."""
    from noisyfit.ranges import SETTING_RANGES, out_of_range

    problems = []
    for dotted, spec in SETTING_RANGES.items():
        section, key = dotted.split(".")
        problem = out_of_range(dotted, getattr(getattr(cfg, section), key), spec)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("; ".join(problems) + ". Fix the value with the override key=value (e.g. "
                          "optim.lr=0.05) or in the config file.")
