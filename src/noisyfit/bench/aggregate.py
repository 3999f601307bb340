"""Group result files into table cells without ever averaging across different protocols.

A cell is (suite, method, label set, config variant): runs are averaged over seeds only when their
resolved configs agree on everything but the seed and cosmetic switches. Runs of one method and
label set with different configs (a preset edited between runs, a changed override) become
separate variants, reported side by side with the keys that differ.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from noisyfit.bench.files import StoredRun
from noisyfit.bench.suites import CLEANLAB, ORACLE, PLANNED_METHODS

#: config keys that do not change what is measured (logging, paths, how the machine is used) and the seed
#: itself. ``data.workers`` and ``data.memory_budget_mb`` decide how images reach the batches (decoding
#: workers; streamed or held in memory), not which batches: both paths give identical batches
#: (tests/test_streaming.py). ``train.threads`` is the machine's share given to the run.
IGNORED_KEYS = {("train", "seed"), ("train", "progress"), ("train", "tensorboard"), ("train", "checkpoint"),
                ("train", "checkpoint_minutes"), ("train", "threads"),
                ("data", "data_dir"), ("data", "download"), ("data", "workers"), ("data", "memory_budget_mb")}
#: the protocol every method of a suite shares: a method row whose core differs from CE's is marked
CORE_KEYS = (("model", "backbone"), ("model", "args"), ("train", "epochs"), ("train", "batch_size"),
             ("train", "precision"), ("data", "val_fraction"), ("data", "train_subset"),
             # gradient clipping is part of a method's optimisation budget: a clipped method beside unclipped CE
             # is not like with like (CAR's and PEMM's CPU presets clip at 5, CE's does not)
             ("optim", "grad_clip"))


def _flat(config: dict) -> dict[tuple[str, str], object]:
    return {(sec, k): v for sec, d in (config or {}).items() if isinstance(d, dict) for k, v in d.items()}


#: how strong views are made: measured only by methods that draw them (``Method.uses_strong_views``)
STRONG_VIEW_KEYS = {("train", "strong_policy"), ("train", "strong_draw")}
#: keys added after runs were stored, with the behaviour those older runs had (their config lacks the key)
LEGACY_DEFAULTS = {("train", "strong_draw"): "batch"}
#: keys added after runs were stored whose default *is* the behaviour those older runs had (options added
#: with a default that keeps earlier results reproducible): a run lacking one gets the current default. A key
#: whose default changed what runs do belongs in LEGACY_DEFAULTS instead, with the old value.
ADDED_WITH_OLD_BEHAVIOUR = {("data", "stream"), ("optim", "bn_bias_lr_scale"), ("optim", "triangle"),
                            ("train", "crop_pad"), ("train", "flip"),
                            ("train", "ema"), ("train", "ema_decay"), ("train", "ema_every"), ("train", "ema_ramp"),
                            ("train", "eval_tta"), ("train", "track_fit")}


def _current_defaults() -> dict[tuple[str, str], object]:
    from dataclasses import asdict

    from noisyfit.config import Config

    return {key: v for key, v in _flat(asdict(Config())).items() if key in ADDED_WITH_OLD_BEHAVIOUR}


def _uses_strong_views(run: StoredRun) -> bool:
    """Whether the run's method draws strong views; unknown methods count as drawing them."""
    from noisyfit.methods import get_method_class

    name = ((run.data.get("config") or {}).get("method") or {}).get("name")
    try:
        return bool(get_method_class(name).uses_strong_views)
    except Exception:  # a method of another noisyfit version: keep every key (never pool by mistake)
        return True


def _measured_config(run: StoredRun) -> dict[tuple[str, str], object]:
    """The run's config keys that define the measurement: ignored keys dropped, legacy keys filled."""
    flat = {key: v for key, v in _flat(run.data.get("config")).items() if key not in IGNORED_KEYS}
    for key, default in _current_defaults().items():
        flat.setdefault(key, default)
    if _uses_strong_views(run):
        for key, old in LEGACY_DEFAULTS.items():
            flat.setdefault(key, old)
    else:
        flat = {key: v for key, v in flat.items() if key not in STRONG_VIEW_KEYS}
    return flat


def fingerprint(run: StoredRun) -> str:
    """Everything that defines the measurement except the seed (and logging switches)."""
    flat = {f"{s}.{k}": v for (s, k), v in _measured_config(run).items()}
    return json.dumps({"schema": run.data.get("schema"), "config": flat}, sort_keys=True, default=str)


def core_protocol(run: StoredRun) -> dict[str, object]:
    flat = _flat(run.data.get("config"))
    return {f"{s}.{k}": flat.get((s, k)) for s, k in CORE_KEYS}


def config_diff(a: StoredRun, b: StoredRun) -> list[str]:
    """``key=value`` of ``b`` wherever its config differs from ``a``'s (ignored keys excluded)."""
    fa, fb = _measured_config(a), _measured_config(b)
    keys = sorted(set(fa) | set(fb))
    return [f"{s}.{k}={json.dumps(fb.get((s, k)), default=str)}" for s, k in keys
            if fa.get((s, k)) != fb.get((s, k))]


@dataclass
class Cell:
    """Runs of one method on one label set with one config, over seeds."""

    suite: str
    method: str
    label_set: str
    variant: int = 0
    runs: list[StoredRun] = field(default_factory=list)
    #: for variants > 0: the keys in which this variant differs from variant 0
    differs: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        return self.method if self.variant == 0 else f"{self.method} [variant {self.variant + 1}]"

    def values(self, *path: str) -> list[float]:
        """The numbers at ``path`` (e.g. ``"selected", "test_acc"``) over seeds, missing ones skipped."""
        out = []
        for r in self.runs:
            v = r.data
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append(float(v))
        return out


def method_order(name: str) -> tuple:
    """CE, the oracle, planned methods in plan order, others alphabetically, cleanlab last."""
    if name == "ce":
        return (0, 0, name)
    if name == ORACLE:
        return (1, 0, name)
    if name == CLEANLAB:
        return (4, 0, name)
    if name in PLANNED_METHODS:
        return (2, PLANNED_METHODS.index(name), name)
    return (3, 0, name)


def build_cells(runs: list[StoredRun]) -> list[Cell]:
    """Cells of one suite, ordered by method then label set then variant (largest group first)."""
    groups: dict[tuple[str, str], dict[str, list[StoredRun]]] = {}
    for r in runs:
        groups.setdefault((r.method, r.label_set), {}).setdefault(fingerprint(r), []).append(r)
    cells = []
    for (method, ls), by_fp in groups.items():
        variants = sorted(by_fp.values(), key=lambda rs: (-len(rs), min(r.seed for r in rs)))
        for i, rs in enumerate(variants):
            rs = sorted(rs, key=lambda r: r.seed)
            diff = config_diff(variants[0][0], rs[0]) if i else []
            cells.append(Cell(rs[0].suite, method, ls, i, rs, diff))
    return sorted(cells, key=lambda c: (method_order(c.method), c.label_set, c.variant))


def mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None for fewer than 2 values) and count."""
    n = len(values)
    if n == 0:
        return None, None, 0
    m = sum(values) / n
    if n < 2:
        return m, None, n
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)), n


def recovery_ratio(acc: float | None, acc_ce: float | None, acc_oracle: float | None) -> float | None:
    """R = (acc - acc_CE) / (acc_oracle - acc_CE): 0 = no better than CE, 1 = as good as clean labels.

    None when a term is missing or the oracle is not above CE (the ratio would be meaningless).
    """
    if acc is None or acc_ce is None or acc_oracle is None or acc_oracle - acc_ce <= 1e-12:
        return None
    return (acc - acc_ce) / (acc_oracle - acc_ce)
