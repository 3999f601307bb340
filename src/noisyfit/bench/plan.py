"""From a suite (data) to the concrete runs: presets, commands, run folders, and ``*`` / ``best:K``.

Stages are expanded one at a time, when they are reached, because ``best:K`` depends on the
results of the stages before it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from noisyfit.bench.files import read_suite, run_key
from noisyfit.bench.suites import CLEANLAB, PLANNED_METHODS, PSEUDO_METHODS, LabelSet, Suite, split_variant
from noisyfit.config import PRESET_DIR, ConfigError, load_config


class NoPreset(LookupError):
    """A method has no config for this suite's protocol."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: a method (or pseudo-method) on a label set with a seed."""

    suite: str
    method: str
    label_set: LabelSet
    seed: int
    config: str
    overrides: tuple[str, ...] = ()
    stage: int = 0

    @property
    def key(self) -> str:
        return run_key(self.method, self.label_set.name, self.seed)

    @property
    def trained_method(self) -> str:
        """The registry method that trains (CE for the oracle and the cleanlab row; the base of a variant)."""
        return "ce" if self.method in PSEUDO_METHODS else split_variant(self.method)[0]

    def run_dir(self, runs_root: Path) -> Path:
        return Path(runs_root) / self.suite / self.method / self.label_set.name / f"seed{self.seed}"

    def command(self, run_dir: Path, *, resume: bool = False, python: str = sys.executable) -> list[str]:
        """The subprocess command: ``python -m noisyfit.cli train ...`` (or the cleanlab row)."""
        if self.method == CLEANLAB:
            cmd = [python, "-m", "noisyfit.bench.cleanlab_row"]
        else:
            cmd = [python, "-m", "noisyfit.cli", "train"]
        cmd += ["--config", self.config, "--dataset", self.label_set.dataset]
        if self.label_set.noise:
            cmd += ["--noise", self.label_set.noise]
        cmd += ["--seed", str(self.seed), "--out", str(run_dir)]
        if self.method != CLEANLAB:
            cmd.append("--no-progress")
            if resume:
                cmd.append("--resume")
        return cmd + list(self.overrides)


def runnable_methods() -> list[str]:
    """Registered methods that a fresh ``noisyfit train`` process can load: those of ``noisyfit.methods``.

    A method registered at run time by other code (a test, a notebook) is in this process's registry
    but not in the run process's, so the bench does not plan it.
    """
    from noisyfit.methods import get_method_class, list_methods

    return [m for m in list_methods() if get_method_class(m).__module__.startswith("noisyfit.methods.")]


def preset_exists(name: str) -> bool:
    return (PRESET_DIR / f"{name}.yaml").is_file()


def resolve_config(suite: Suite, method: str) -> tuple[str, tuple[str, ...]]:
    """``(config, overrides)`` of ``method`` in ``suite``.

    The suite's preset ``suite.preset.format(method=...)`` when it exists; else, for suites with a
    fallback (smoke), ``<method>/smoke`` or the fallback protocol with ``method.name`` set and the
    method's hyper-parameters taken from its ``cpu-cifar10n`` preset (sized for a ~12-epoch run).

    Raises
    ------
    NoPreset
        Neither exists; the message names the preset that is missing.
    """
    name, variant = ("ce", None) if method in PSEUDO_METHODS else split_variant(method)
    preset = suite.preset.format(method=name)
    if variant is not None:
        # a variant never falls back: running the base preset under the variant's name would mislabel a row
        preset = f"{preset}-{variant}"
        if not preset_exists(preset):
            raise NoPreset(f"{method}: no preset {preset} (src/noisyfit/configs/{preset}.yaml)")
    if preset_exists(preset):
        return preset, suite.overrides
    if suite.fallback_preset is None:
        raise NoPreset(f"{method}: no preset {preset} (src/noisyfit/configs/{preset}.yaml)")
    if preset_exists(f"{name}/smoke"):
        return f"{name}/smoke", suite.overrides
    extra = [f"method.name={name}"]
    if preset_exists(f"{name}/cpu-cifar10n"):
        args = load_config(PRESET_DIR / f"{name}/cpu-cifar10n.yaml").method.args
        # JSON is valid YAML, and the train command parses override values as YAML.
        extra += [f"method.args.{k}={json.dumps(v)}" for k, v in sorted(args.items())]
    return suite.fallback_preset, (*extra, *suite.overrides)


def rank_methods(suite: Suite, results_root: Path) -> list[tuple[str, float, int]]:
    """``(method, mean selected test accuracy, n seeds)`` on the ranking label set, best first.

    CE and the pseudo-methods are not ranked: ``best:K`` picks methods to compare against them.
    """
    accs: dict[str, list[float]] = {}
    for r in read_suite(Path(results_root) / suite.name):
        if r.label_set != suite.rank_label_set or r.method in ("ce", *PSEUDO_METHODS):
            continue
        acc = (r.data.get("selected") or {}).get("test_acc")
        if acc is not None:
            accs.setdefault(r.method, []).append(float(acc))
    ranked = [(m, sum(v) / len(v), len(v)) for m, v in accs.items()]
    return sorted(ranked, key=lambda t: (-t[1], t[0]))


@dataclass
class StagePlan:
    """The runs of one stage, notes on what was left out, and runs not yet decidable."""

    index: int
    runs: list[RunSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: placeholder runs of a ``best:K`` selector with no results to rank yet
    undecided: int = 0


def expand_stage(suite: Suite, index: int, *, registered: list[str], results_root: Path,
                 only: set[str] | None = None, seeds: tuple[int, ...] | None = None,
                 label_sets: set[str] | None = None) -> StagePlan:
    """The concrete runs of ``suite.stages[index]`` given the registry and the results so far.

    Parameters
    ----------
    registered : list of str
        :func:`runnable_methods` (passed in so tests can fake the registry).
    results_root : Path
        Root of the results folders (``best:K`` ranks what is there).
    only : set of str, optional
        Keep only these methods (pseudo-methods included by name).
    seeds : tuple of int, optional
        Replace every stage's seeds.
    label_sets : set of str, optional
        Keep only runs on these label sets (e.g. ``{"worst"}``).
    """
    if label_sets is not None:
        unknown = sorted(set(label_sets) - {ls.name for ls in suite.label_sets})
        if unknown:
            raise ConfigError(f"suite {suite.name!r} has no label set(s) {unknown}; it has "
                              f"{[ls.name for ls in suite.label_sets]}")
    stage = suite.stages[index]
    plan = StagePlan(index)
    methods: list[str] = []
    for token in stage.methods:
        if token == "*":
            methods += list(PLANNED_METHODS) + sorted(set(registered) - set(PLANNED_METHODS))
            methods += list(suite.variants)
        elif token.startswith("best:"):
            k = int(token.split(":", 1)[1])
            ranked = [m for m, _, _ in rank_methods(suite, results_root)][:k]
            if len(ranked) < k:
                plan.undecided += (k - len(ranked)) * len(stage.label_sets) * len(seeds or stage.seeds)
                plan.notes.append(f"stage {index + 1}: {token} has {len(ranked)} ranked method(s) so far "
                                  f"(on {suite.rank_label_set}); the rest is decided when results land")
            methods += ranked
        else:
            methods.append(token)
    if only is not None:
        plan.undecided = 0  # whether an undecided pick would pass the filter is unknown: count none
    stage_seeds = tuple(seeds) if seeds else stage.seeds
    seen: set[str] = set()
    for m in methods:
        if m in seen or (only is not None and m not in only):
            continue
        seen.add(m)
        if m not in PSEUDO_METHODS and split_variant(m)[0] not in registered:
            plan.notes.append(f"skip {m}: not a registered method yet (no noisyfit/methods file)")
            continue
        try:
            config, overrides = resolve_config(suite, m)
        except NoPreset as e:
            plan.notes.append(f"skip {e}")
            continue
        for ls_name in stage.label_sets:
            if label_sets is not None and ls_name not in label_sets:
                continue
            ls = suite.label_set(ls_name)
            for s in stage_seeds:
                plan.runs.append(RunSpec(suite.name, m, ls, s, config,
                                         (*overrides, *ls.overrides_for(m)), index))
    return plan


def expand_suite(suite: Suite, *, registered: list[str], results_root: Path, only: set[str] | None = None,
                 seeds: tuple[int, ...] | None = None, label_sets: set[str] | None = None,
                 start: int = 0) -> list[StagePlan]:
    """Expand stages ``start..`` with the results present now; a run listed twice is kept once.

    An ``only`` name that is no row this suite could run (not a registered built-in method, variant or pseudo-method)
    is refused: it used to drop out of the plan in silence (a method registered outside noisyfit, say, which the
    bench cannot run: each run is its own ``noisyfit train`` process)."""
    if only is not None:
        named = {t for stage in suite.stages for t in stage.methods if t != "*" and not t.startswith("best:")}
        known = {*PSEUDO_METHODS, *registered, *suite.variants, *named}
        unknown = sorted(m for m in only if m not in known)
        if unknown:
            raise ConfigError(f"--only {','.join(unknown)}: not a method suite {suite.name!r} can run. It runs noisyfit's "
                              f"built-in methods with their presets, its variants and {', '.join(PSEUDO_METHODS)}; "
                              f"known: {', '.join(sorted(known))}. A method of your own: compare it with "
                              "`noisyfit train` runs and `noisyfit summary`.")
    plans, seen = [], set()
    for i in range(start, len(suite.stages)):
        p = expand_stage(suite, i, registered=registered, results_root=results_root, only=only, seeds=seeds,
                         label_sets=label_sets)
        p.runs = [r for r in p.runs if not (r.key in seen or seen.add(r.key))]
        plans.append(p)
    return plans
