"""The named benchmark grids, as data: which methods, label sets, seeds and protocol, in which order.

A suite is a list of *stages* run in order, so that the runs that matter most land first and a
partial result is already useful (CE and the oracle before the methods; one seed of every method
before extra seeds; the worst label set before aggre). Method names in a stage are registry names,
two pseudo-methods, or a selector:

``oracle``
    CE trained on the *clean* labels under the same protocol: the accuracy ceiling of recovery ratios.
``cleanlab``
    Out-of-fold CE predictions at the same budget fed to ``cleanlab.filter.find_label_issues``: the
    detection baseline (needs ``noisyfit.detect.oof`` and the ``cleanlab`` package).
``*``
    Every planned method and every registered method (those not registered yet are skipped).
``<method>-<variant>``
    A registered method under a variant preset: ``<method>/<protocol>-<variant>`` (for example
    ``bkd-detach`` runs ``bkd/cpu-cifar10n-detach``), reported as its own row. A suite's ``variants``
    join ``*`` after the methods, so a departure from the official defaults is measured, never swapped in.
``best:K``
    The K methods (not CE, not pseudo-methods) with the highest mean noisy-validation-selected test
    accuracy on the suite's ranking label set, among the results present when the stage starts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from noisyfit.config import ConfigError

#: every method planned for the toolkit; the bench lists them before their files land
PLANNED_METHODS: tuple[str, ...] = (
    "ce", "gce", "sce", "pemm", "car", "bkd", "coteaching", "j_coteaching", "jump_teaching", "dividemix",
    "elr", "elr_plus", "plremix", "ce_plr", "dividemix_plr",
)

ORACLE = "oracle"
CLEANLAB = "cleanlab"
PSEUDO_METHODS = (ORACLE, CLEANLAB)

#: Rough cost of one run relative to a CE run, used only for time estimates before a method has a
#: measured run; measured times replace them as runs finish. From the cpu-cifar10n runs (wall time of a
#: whole run against CE's ~800 s): CE+PLR 4.2x (three views, two of them per-image AutoAugment);
#: DivideMix 8.5x (its epochs after warm-up take ~12.5x CE's: both networks guess on 6 views and train
#: on 4 per labelled sample; 3 warm-up epochs are cheap); PLReMix 16.5x (two strong views more per
#: sample, a longer warm-up). DivideMix+PLR trains on as many images per step as PLReMix: same guess.
COST_GUESS: dict[str, float] = {
    "ce": 1.0, "gce": 1.0, "sce": 1.0, "pemm": 1.1, "car": 1.1, "elr": 1.1, "jump_teaching": 1.3,
    "coteaching": 2.0, "j_coteaching": 2.0, "bkd": 2.0, "ce_plr": 4.2, "elr_plus": 3.0, "dividemix": 8.5,
    "plremix": 16.5, "dividemix_plr": 16.5, ORACLE: 1.0, CLEANLAB: 4.0,  # 5 folds x 4/5 of the data
}


def split_variant(name: str) -> tuple[str, str | None]:
    """``("bkd", "detach")`` for ``"bkd-detach"``; ``(name, None)`` for a plain method name."""
    base, sep, variant = name.partition("-")
    if sep and not (base and variant):
        raise ValueError(f"bench method {name!r}: a variant is written '<method>-<variant>'")
    return base, (variant or None)



@dataclass(frozen=True)
class LabelSet:
    """Which training labels a run uses.

    Parameters
    ----------
    name : str
        Short name used in file names (no dots, no double underscores), e.g. ``worst``.
    dataset : str
        The ``--dataset`` value, e.g. ``cifar10n-worst``.
    noise : str, optional
        A synthetic noise spec (``--noise``), e.g. ``sym:0.4``.
    clean : bool
        True for the clean labels that the oracle trains on.
    method_overrides : tuple of (method, overrides) pairs
        ``key=value`` overrides for one method on this label set only: for methods that take the noise
        rate as a hyper-parameter (Co-teaching's forget rate), whose presets are set for ``worst``.
    """

    name: str
    dataset: str
    noise: str | None = None
    clean: bool = False
    method_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def overrides_for(self, method: str) -> tuple[str, ...]:
        """This label set's overrides for ``method`` (a variant inherits its base method's)."""
        base = split_variant(method)[0]
        return tuple(o for m, os in self.method_overrides if m in (method, base) for o in os)


@dataclass(frozen=True)
class Stage:
    """One block of runs: methods x label sets x seeds, expanded in that nesting order."""

    methods: tuple[str, ...]
    label_sets: tuple[str, ...]
    seeds: tuple[int, ...]
    note: str = ""


@dataclass(frozen=True)
class Suite:
    """A named benchmark grid.

    Parameters
    ----------
    name : str
    description : str
    preset : str
        Preset pattern of a method's config, ``{method}`` replaced by the method name
        (e.g. ``{method}/cpu-cifar10n``). The oracle and the cleanlab row use CE's preset.
    label_sets : tuple of LabelSet
        Noisy label sets, plus one ``clean=True`` set for the oracle.
    stages : tuple of Stage
    rank_label_set : str
        Label set on which ``best:K`` ranks methods.
    overrides : tuple of str
        ``key=value`` overrides applied to every run (identical for all methods, so the protocol holds).
    fallback_preset : str, optional
        Config used for a method without its own preset (smoke only); the method's args then come
        from its ``{method}/cpu-cifar10n`` preset when that exists.
    """

    name: str
    description: str
    preset: str
    label_sets: tuple[LabelSet, ...]
    stages: tuple[Stage, ...]
    rank_label_set: str
    overrides: tuple[str, ...] = ()
    fallback_preset: str | None = None
    #: ``<method>-<variant>`` rows that ``*`` adds after the methods (see the module docstring)
    variants: tuple[str, ...] = ()
    published: bool = False  # show the published CIFAR-10N reference table in the report
    #: guessed wall seconds of one CE run, for time estimates before anything is measured
    ce_seconds_guess: float | None = None

    def label_set(self, name: str) -> LabelSet:
        for ls in self.label_sets:
            if ls.name == name:
                return ls
        raise ConfigError(f"suite {self.name!r} has no label set {name!r}; it has "
                          f"{[ls.name for ls in self.label_sets]}")

    @property
    def clean_label_set(self) -> LabelSet:
        return next(ls for ls in self.label_sets if ls.clean)

    def planned_rows(self) -> list[str]:
        """The rows (methods, variants, oracle, cleanlab) this suite's stages plan, in stage order.

        ``*`` stands for every planned method and the suite's variants; ``best:K`` picks among rows that
        are already planned, so it adds none.
        """
        rows: list[str] = []
        for stage in self.stages:
            for m in stage.methods:
                if m == "*":
                    rows += [*PLANNED_METHODS, *self.variants]
                elif not m.startswith("best:"):
                    rows.append(m)
        return list(dict.fromkeys(rows))


# Co-teaching assumes the noise rate is known (forget rate = noise rate); its presets use worst's 40.2%
# (0.4). On aggre (9.03% wrong labels) it gets aggre's rate, as the paper would set it.
_AGGRE_FORGET = ("method.args.forget_rate=0.09",)
_CIFAR10N_LABEL_SETS = (
    LabelSet("worst", "cifar10n-worst"),
    LabelSet("aggre", "cifar10n-aggre",
             method_overrides=(("coteaching", _AGGRE_FORGET), ("j_coteaching", _AGGRE_FORGET))),
    LabelSet("clean", "cifar10", clean=True),
)


def _cifar10n_stages() -> tuple[Stage, ...]:
    # Order: the baseline and the ceiling first (every other number is read against them), then one
    # seed of every method on worst, more seeds for the two best, the detection baseline, then aggre.
    return (
        Stage(("ce",), ("worst",), (0, 1, 2), "CE baseline, 3 seeds"),
        Stage((ORACLE,), ("clean",), (0, 1, 2), "oracle: CE on the clean labels, 3 seeds"),
        Stage(("*",), ("worst",), (0,), "every method, one seed"),
        Stage(("best:2",), ("worst",), (1, 2), "the two best methods on worst: seeds 1 and 2"),
        Stage((CLEANLAB,), ("worst",), (0,), "cleanlab: out-of-fold CE -> find_label_issues"),
        Stage(("ce", "best:2"), ("aggre",), (0,), "aggre: CE and the two best, one seed"),
        Stage(("ce", "best:2"), ("aggre",), (1, 2), "aggre: seeds 1 and 2"),
        Stage((CLEANLAB,), ("aggre",), (0,), "cleanlab on aggre"),
    )


#: the five methods this toolkit was founded on (issue 17: show each of them working)
SEED_METHODS: tuple[str, ...] = ("pemm", "car", "jump_teaching", "plremix", "bkd")


def _long_stages() -> tuple[Stage, ...]:
    # Order (issue 17): the baseline and the ceiling, then the cheap seed methods and their variants; then
    # CE's seeds 1 and 2 before anything else, since the suite is only valid if CE's best-minus-last gap
    # holds over seeds; then the cheap peers, the oracle's seeds, PLReMix (the last seed method) before
    # the peer DivideMix, and extra seeds of the two best last. Reordering runs changes no result.
    # ce-clip5 is CE at PEMM's official gradient clip, so PEMM can be read against CE at the same clipping.
    cheap_seed = ("pemm", "car", "car-lam05", "jump_teaching", "bkd")
    return (
        Stage(("ce",), ("worst",), (0,), "CE baseline, seed 0"),
        Stage((ORACLE,), ("clean",), (0,), "oracle: CE on the clean labels, seed 0"),
        Stage(cheap_seed, ("worst",), (0,), "the cheap seed methods and CAR's non-saturating lambda"),
        Stage(("ce",), ("worst",), (1, 2), "CE seeds 1 and 2"),
        Stage(("ce-clip5", "gce", "elr", "coteaching"), ("worst",), (0,),
              "CE with PEMM's gradient clip (its control row), then the cheap peers"),
        Stage((ORACLE,), ("clean",), (1, 2), "oracle seeds 1 and 2"),
        Stage(("plremix", "dividemix", "plremix-ownproto"), ("worst",), (0,),
              "PLReMix, the peer DivideMix (hours each) and PLReMix's prototype ablation"),
        Stage(("best:2",), ("worst",), (1, 2), "the two best methods on worst: seeds 1 and 2"),
    )


def _airbench_stages() -> tuple[Stage, ...]:
    # Issue 21: CE, the oracle and the two best methods of cpu-cifar10n (ELR and GCE, by worst's recovery
    # ratio over 3 seeds) under airbench94's recipe, on worst then aggre; the label-smoothing baseline `ce-ls`
    # (airbench94's whole recipe) beside them. Order: the baseline and the ceiling, the methods, then seeds.
    methods = ("elr", "gce")
    return (
        Stage(("ce",), ("worst",), (0,), "CE baseline, seed 0"),
        Stage((ORACLE,), ("clean",), (0,), "oracle: CE on the clean labels, seed 0"),
        Stage((*methods, "ce-ls"), ("worst",), (0,), "the two best methods of cpu-cifar10n, CE with label smoothing"),
        Stage((ORACLE,), ("clean",), (1, 2), "oracle seeds 1 and 2"),
        Stage(("ce", *methods), ("worst",), (1, 2), "seeds 1 and 2 on worst"),
        Stage(("ce", *methods, "ce-ls"), ("aggre",), (0,), "aggre, seed 0"),
        Stage(("ce", *methods), ("aggre",), (1, 2), "aggre, seeds 1 and 2"),
    )


SUITES: dict[str, Suite] = {
    "smoke": Suite(
        name="smoke",
        description="scikit-learn digits (64 features) with 40% symmetric noise, MLP, 15 epochs, CPU fp32: "
                    "every registered method, one seed, a few minutes in all (runs in CI)",
        preset="smoke/{method}",
        fallback_preset="smoke/protocol",
        label_sets=(LabelSet("sym40", "digits", noise="sym:0.4"), LabelSet("clean", "digits", clean=True)),
        stages=(
            Stage(("ce",), ("sym40",), (0,)),
            Stage((ORACLE,), ("clean",), (0,)),
            Stage(("*",), ("sym40",), (0,), "every registered method"),
            Stage((CLEANLAB,), ("sym40",), (0,)),
        ),
        rank_label_set="sym40",
        ce_seconds_guess=6.0,  # mostly process start-up: the training itself takes under a second
    ),
    "cpu-cifar10n": Suite(
        name="cpu-cifar10n",
        description="CIFAR-10N on 2 CPU cores: fastcnn 64/256/256, 12 epochs, batch 512, bf16 "
                    "(protocols/cpu-cifar10n.yaml); selection on the noisy validation split",
        preset="{method}/cpu-cifar10n",
        label_sets=_CIFAR10N_LABEL_SETS,
        stages=_cifar10n_stages(),
        rank_label_set="worst",
        # BKD with the student's probabilities detached inside the robust targets: the official code
        # does not detach them, and on this 12-epoch protocol the official run collapsed after the tipping point
        variants=("bkd-detach",),
        published=True,
        ce_seconds_guess=15 * 60.0,  # protocols/cpu-cifar10n.yaml: "about 13-15 minutes on 2 cores"
    ),
    "cpu-cifar10n-long": Suite(
        name="cpu-cifar10n-long",
        description="CIFAR-10N on 2 CPU cores where cross-entropy memorises the wrong labels "
                    "(protocols/cpu-cifar10n-long.yaml; chosen by the probes in benchmarks/LONG_PROBES.md): "
                    "a stratum of the training set, many passes over each image, every epoch's fit of the "
                    "given labels and each mechanism's health recorded; selection on the noisy validation split",
        preset="{method}/cpu-cifar10n-long",
        label_sets=_CIFAR10N_LABEL_SETS,
        stages=_long_stages(),
        rank_label_set="worst",
        published=False,
        ce_seconds_guess=35 * 60.0,
    ),
    "cpu-cifar10n-airbench": Suite(
        name="cpu-cifar10n-airbench",
        description="CIFAR-10N on 2 CPU cores with airbench94's training recipe, label smoothing left out "
                    "(protocols/cpu-cifar10n-airbench.yaml; the row airbench-but-ls of "
                    "benchmarks/RECIPE_ABLATION.md): fastcnn 64/256/256 with a whitening stem, 10 epochs, batch "
                    "1024, Lookahead weights, test-time augmentation; selection on the noisy validation split",
        preset="{method}/cpu-cifar10n-airbench",
        label_sets=_CIFAR10N_LABEL_SETS,
        stages=_airbench_stages(),
        rank_label_set="worst",
        # the ablation's whole-recipe row took 2,792 s wall at 1 thread beside another job, a third of it in
        # the per-epoch evaluation with 6 test-time views (results/recipe-ablation/ce-airbench__clean__seed0.json)
        ce_seconds_guess=47 * 60.0,
    ),
    "paper-cifar10n": Suite(
        name="paper-cifar10n",
        description="CIFAR-10N with the papers' backbones and schedules (PreAct ResNet-18, 300 epochs "
                    "unless a method's paper says otherwise; protocols/paper-cifar10n.yaml): for a GPU",
        preset="{method}/paper-cifar10n",
        label_sets=_CIFAR10N_LABEL_SETS,
        stages=_cifar10n_stages(),
        rank_label_set="worst",
        published=True,
    ),
}


# The airbench suite in float32: the same grid and settings with the arithmetic changed, for CPUs without
# bfloat16 kernels (AVX2 only), where bf16 autocast is emulated at 17-18x float32's time
# (benchmarks/PRECISION_SPEED.md). A suite of its own, never pooled with the bf16 one: the recipe ablation
# measured the two arithmetics a seed apart on clean labels (90.36% fp32, 90.48% bf16; one seed each), which
# is not enough to call them the same protocol.
SUITES["cpu-cifar10n-airbench-fp32"] = replace(
    SUITES["cpu-cifar10n-airbench"],
    name="cpu-cifar10n-airbench-fp32",
    description=SUITES["cpu-cifar10n-airbench"].description + "; float32 arithmetic (train.precision=fp32), "
                "for CPUs without bfloat16 kernels",
    overrides=("train.precision=fp32",),
    # the ablation's fp32 whole-recipe row took 7,593 s wall at 2 threads on an AVX2 CPU: 406 s per epoch of
    # training (median) and nearly as much again in each epoch's test-time-augmented evaluations
    # (results/recipe-ablation/ce-airbench-fp32__clean__seed0.json)
    ce_seconds_guess=130 * 60.0,
)


# airbench94_muon's recipe in float32 (issue 21): Muon on the conv filters, batch 2000, 12 epochs, no Lookahead
# (protocols/cpu-cifar10n-airbench-muon.yaml). A suite of its own: the optimiser, the epochs and the kept weights
# change for every method alike, so nothing here is pooled with cpu-cifar10n-airbench(-fp32). The same grid.
SUITES["cpu-cifar10n-airbench-muon-fp32"] = replace(
    SUITES["cpu-cifar10n-airbench-fp32"],
    name="cpu-cifar10n-airbench-muon-fp32",
    description="CIFAR-10N on 2 CPU cores with airbench94_muon's training recipe, label smoothing left out "
                "(protocols/cpu-cifar10n-airbench-muon.yaml; the row muon-but-ls-fp32 of "
                "benchmarks/RECIPE_ABLATION.md): fastcnn 64/256/256 with a whitening stem, Muon on the conv "
                "filters, 12 epochs (the script: 8), batch 2000, test-time augmentation; selection on the noisy "
                "validation split; float32 arithmetic (train.precision=fp32)",
    preset="{method}/cpu-cifar10n-airbench-muon",
    # 12 epochs, the most issue 21 allows: the ablation's 12-epoch row reached 91.04% on clean labels against 90.44
    # at the script's 8 (one seed each; results/recipe-ablation/ce-muon12-but-ls-fp32__clean__seed0.json). That row
    # trained 3,252 s at 2 threads on an AVX2 CPU; evaluated every epoch here, about 150 s each
    overrides=("train.precision=fp32", "train.epochs=12"),
    ce_seconds_guess=85 * 60.0,
)


def get_suite(name: str) -> Suite:
    """The suite called ``name``; the error lists the valid names."""
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return SUITES[name]
