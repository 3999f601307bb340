"""Issue 21's ablation of airbench94's training-recipe tricks on the CPU protocol: each alone, all together.

Every row is CE on the shared CPU protocol (``ce/cpu-cifar10n``: fastcnn 64/256/256, 12 epochs, batch 512,
bf16) with one recipe option turned on, trained on the clean labels (the oracle) and on CIFAR-10N worst:

==================  ======================================================================================
row                 what changes (settings; see noisyfit.engine.recipe)
==================  ======================================================================================
``base``            nothing: the protocol as it is
``whiten``          frozen 2x2 patch-whitening stem, bias trained 3 epochs (``model.args.whiten``)
``dirac``           identity initialisation of the 3x3 convs (``model.args.dirac``)
``bnbias``          BatchNorm biases at 64x the lr, 1/64 the weight decay (``optim.bn_bias_lr_scale``)
``ls``              label smoothing 0.2: the preset ``ce/cpu-cifar10n-ls`` (the bench row ``ce-ls``)
``ema``             evaluate and keep an EMA of the weights (``train.ema=ema``, airbench's decay schedule)
``lookahead``       airbench's Lookahead: the EMA, with the weights reset to it every 5 steps
``altflip``         alternating flips (``train.flip=alternate``)
``tta``             test-time augmentation, mirror + 1-pixel translations (``train.eval_tta``)
``all``             every trick above (Lookahead for the average), as airbench94 combines them
``all-but-ls-tta``  every trick that leaves the loss and the evaluation alone
``hyp``             airbench94's optimiser settings at the protocol's batch 512: its lr of 11.5 per 1024
                    examples (summed loss, decoupled from momentum) is 0.75 on our mean loss at batch 512,
                    momentum 0.85, weight decay 1.33e-3 (the same decay per example), its triangular lr
                    schedule (0.2 -> 1 at 23% -> 0.07, ``optim.schedule=triangle``)
``bnscale``         airbench94's BatchNorm (scale fixed at 1, momentum 0.6 in its convention, eps 1e-12) and its
                    1/9 output scale after a bias-free head (``model.args.bn/logit_scale/head_bias``)
``crop2``           airbench94's 2-pixel crop translation (``train.crop_pad=2``; protocol: 4)
``airbench``        airbench94's whole recipe: ``all`` + ``hyp`` + ``bnscale`` + ``crop2`` at its batch of 1024
                    (lr 1.5) and 10 epochs (airbench94: 9.9)
``airbench-but-ls`` the same without label smoothing: the candidate protocol for a new suite, where CE is CE
                    (label smoothing stays its own baseline row)
``fp32``            the protocol in float32 (``train.precision=fp32``): the reference of the float32 rows, whose
                    Δ and time ratio are taken against it (an AVX2 CPU without bf16 kernels can run only these)
``airbench-fp32``   ``airbench`` in float32 (``train.precision=fp32``): what bf16 autocast costs the recipe
``airbench-but-ls-fp32-eps``  ``airbench-but-ls`` in float32 with the whitening floor ``whiten_eps`` at 5e-3 (a
                    probe of the JPEG copy's weak directions; its reference is the fp32 suite's oracle)
``muon-but-ls-fp32``  airbench94_muon's recipe (the preset ``ce/cpu-cifar10n-airbench-muon``: Muon on the conv
                    filters, batch 2000, 8 epochs, no Lookahead) without label smoothing, in float32: beside the
                    oracle of cpu-cifar10n-airbench-fp32 (the legacy recipe, 10 epochs)
``muon12-but-ls-fp32``  the same at 12 epochs, the most issue 21 allows
``<trick>-fp32``    each single-trick row above (``whiten`` ... ``crop2``) in float32, against ``fp32``
==================  ======================================================================================

Runs go through the bench machinery (:mod:`noisyfit.bench.runner`): one ``noisyfit train`` process per run in
``runs/bench/recipe-ablation/<row>/<label set>/seed<S>/``, the results copied to
``benchmarks/results/recipe-ablation/<row>__<label set>__seed<S>.json`` (``<row>`` is ``ce`` for the base and
``ce-<name>`` for the others, as bench variants are named); a finished run is skipped, a cut one resumed.
After every run the table ``benchmarks/RECIPE_ABLATION.md`` is written again from the result files.

    .venv/bin/python benchmarks/recipe_ablation.py --dry-run          # the plan and a time estimate
    .venv/bin/python benchmarks/recipe_ablation.py                    # run (resumable), then the table
    .venv/bin/python benchmarks/recipe_ablation.py --rows base,all --seeds 0,1,2
    .venv/bin/python benchmarks/recipe_ablation.py --report           # only rewrite the table

Run it alone on the machine (DEVELOPERS.md): 16 rows x 2 label sets = 32 runs of about 15 minutes each on 2
cores of a fast CPU with bf16 kernels (the TTA rows' evaluation costs about 6x the usual 6 s per epoch); the
bf16 rows run so far took about an hour each at one thread beside another bench (their result files). Beside another long job, give each
one thread (``--threads 1``; benchmarks/results/contention.md): the seconds per epoch of the table then
compare rows run under the same sharing only (its ``others' CPU`` figures say how much the machine was shared).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from noisyfit.bench.files import read_suite  # noqa: E402
from noisyfit.bench.runner import (Estimator, RunLocked, emulated_bf16_note, execute, fmt_duration,  # noqa: E402
                                   run_estimate, run_lock, run_status)
from noisyfit.bench.suites import LabelSet  # noqa: E402
from noisyfit.bench.plan import RunSpec  # noqa: E402

SUITE = "recipe-ablation"
BASE_PRESET = "ce/cpu-cifar10n"
LABEL_SETS = {"clean": LabelSet("clean", "cifar10", clean=True), "worst": LabelSet("worst", "cifar10n-worst")}

WHITEN = ("model.args.whiten=true",)
DIRAC = ("model.args.dirac=true",)
BNBIAS = ("optim.bn_bias_lr_scale=64",)
EMA = ("train.ema=ema",)
LOOKAHEAD = ("train.ema=lookahead",)
ALTFLIP = ("train.flip=alternate",)
TTA = ("train.eval_tta=mirror_translate",)
# airbench94's lr is 11.5 per 1024 examples on a summed loss, divided by 1024 * (1 + 1 / (1 - momentum)):
# 1.465e-3 per example, so 0.75 on a mean loss at batch 512 (1.5 at 1024); its weight decay, 0.0153 per 1024
# examples, is 1.33e-3 times the lr on a mean loss at any batch size.
HYP_BUT_LR = ("optim.momentum=0.85", "optim.weight_decay=1.33e-3", "optim.schedule=triangle",
              "optim.warmup_epochs=0")
HYP = ("optim.lr=0.75", *HYP_BUT_LR)
#: the arithmetic: the protocol trains and evaluates under bf16 autocast (8 mantissa bits); airbench94 runs in
#: half precision on a GPU (fp16: 11 bits).
FP32 = ("train.precision=fp32",)
BNSCALE = ("model.args.bn=airbench", "model.args.logit_scale=0.1111111111111111", "model.args.head_bias=false")
CROP2 = ("train.crop_pad=2",)
AIRBENCH_SIZE = ("train.batch_size=1024", "optim.lr=1.5", "train.epochs=10", *HYP_BUT_LR)


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    preset: str = BASE_PRESET
    overrides: tuple[str, ...] = ()
    #: the row its Δ and time ratio are taken against: the same arithmetic (bf16 rows: ``base``)
    ref: str = "base"

    @property
    def method(self) -> str:
        """The bench row name: ``ce`` for the protocol itself, ``ce-<name>`` for a variant of it."""
        return "ce" if self.name == "base" else f"ce-{self.name}"


ROWS = (  # in the order they run: the reference and the headline first, then each trick alone
    Row("base", "the protocol (CE, fastcnn 64/256/256, 12 epochs)"),
    Row("all", "every trick (Lookahead as the average)", "ce/cpu-cifar10n-ls",
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP + TTA),
    Row("all-but-ls-tta", "every trick but label smoothing and TTA", BASE_PRESET,
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP),
    Row("airbench", "airbench94's whole recipe, batch 1024, 10 epochs", "ce/cpu-cifar10n-ls",
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP + TTA + BNSCALE + CROP2 + AIRBENCH_SIZE),
    Row("airbench-but-ls", "airbench94's recipe without label smoothing", BASE_PRESET,
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP + TTA + BNSCALE + CROP2 + AIRBENCH_SIZE),
    Row("fp32", "the protocol in float32: the reference of the float32 rows (the others: bf16 autocast)",
        overrides=FP32),
    Row("airbench-fp32", "airbench94's whole recipe in float32", "ce/cpu-cifar10n-ls",
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP + TTA + BNSCALE + CROP2 + AIRBENCH_SIZE + FP32, ref="fp32"),
    Row("airbench-but-ls-fp32-eps", "airbench94's recipe without label smoothing, float32, the whitening stem's "
        "eigenvalue floor at 5e-3 instead of 5e-4: the JPEG copy's stem then amplifies its directions 7-9 as a "
        "stem fitted on the original pixels would (benchmarks/JPEG_GAP.md); compare with the oracle of "
        "cpu-cifar10n-airbench-fp32, the same but for the floor", BASE_PRESET,
        WHITEN + DIRAC + BNBIAS + LOOKAHEAD + ALTFLIP + TTA + BNSCALE + CROP2 + AIRBENCH_SIZE + FP32
        + ("model.args.whiten_eps=0.005",), ref="fp32"),
    Row("muon-but-ls-fp32", "airbench94_muon's recipe (Muon on the conv filters, batch 2000, 8 epochs, no "
        "Lookahead) without label smoothing, float32; compare with the oracle of cpu-cifar10n-airbench-fp32 "
        "(airbench94's legacy recipe, 10 epochs)", "ce/cpu-cifar10n-airbench-muon", FP32, ref="fp32"),
    # evaluated every 4th epoch (and the last): the evaluation draws no random numbers and leaves the weights
    # alone, so the last epoch's model is the one every-epoch evaluation would give; it saves 8 of the 12 test-time-
    # augmented passes (about 3 minutes each here)
    Row("muon12-but-ls-fp32", "the same at 12 epochs (evaluated every 4th)", "ce/cpu-cifar10n-airbench-muon",
        FP32 + ("train.epochs=12", "train.eval_every=4"), ref="fp32"),
    Row("whiten", "2x2 patch-whitening stem", overrides=WHITEN),
    Row("dirac", "identity init of the convs", overrides=DIRAC),
    Row("bnbias", "BN biases at 64x lr", overrides=BNBIAS),
    Row("ls", "label smoothing 0.2", "ce/cpu-cifar10n-ls"),
    Row("ema", "EMA of the weights", overrides=EMA),
    Row("lookahead", "Lookahead (EMA, reset every 5 steps)", overrides=LOOKAHEAD),
    Row("altflip", "alternating flips", overrides=ALTFLIP),
    Row("tta", "TTA: mirror + 1-px shifts (6 views)", overrides=TTA),
    Row("hyp", "airbench94's lr, momentum, weight decay, schedule", overrides=HYP),
    Row("bnscale", "airbench94's BatchNorm and 1/9 output scale", overrides=BNSCALE),
    Row("crop2", "2-pixel crop translation", overrides=CROP2),
)
#: each trick alone in float32, against `ce-fp32`: the single-trick rows for CPUs that emulate bf16 (AVX2 only),
#: where a bf16 row costs 17-18x its float32 time. `tta-fp32` trains `ce-fp32`'s model exactly.
SINGLE_TRICKS = ("whiten", "dirac", "bnbias", "ls", "ema", "lookahead", "altflip", "tta", "hyp", "bnscale", "crop2")
ROWS = ROWS + tuple(Row(f"{r.name}-fp32", f"{r.what}, float32", r.preset, r.overrides + FP32, ref="fp32")
                    for name in SINGLE_TRICKS for r in ROWS if r.name == name)
#: rows whose numbers do not mean what CE's mean (see NOTE)
CHANGES_MEANING = {"ls": "loss", "tta": "evaluation", "ema": "kept weights", "lookahead": "kept weights",
                   "all": "loss, evaluation, kept weights", "all-but-ls-tta": "kept weights",
                   "airbench": "loss, evaluation, kept weights", "airbench-but-ls": "evaluation, kept weights",
                   "airbench-fp32": "loss, evaluation, kept weights", "muon-but-ls-fp32": "evaluation",
                   "muon12-but-ls-fp32": "evaluation"}
CHANGES_MEANING.update({f"{k}-fp32": v for k, v in list(CHANGES_MEANING.items()) if k in SINGLE_TRICKS})

NOTE = """\
## Which tricks change the meaning of a noisy-label comparison

* **Label smoothing** changes the loss, and it is itself a partial remedy for label noise (Lukasik et al.,
  "Does label smoothing mitigate label noise?", ICML 2020): CE with label smoothing is another baseline, not
  CE. The bench never puts it inside CE: it is the row `ce-ls` (preset `ce/cpu-cifar10n-ls`), and recovery
  ratios are computed against plain CE and the plain oracle. Methods with their own losses (GCE, SCE, ELR...)
  have no equivalent switch, so a protocol that smoothed CE's labels would favour CE.
* **Test-time augmentation** changes the evaluation, not the training: the TTA row trains exactly the base
  row's model (same seed, same random draws) and only its validation/test accuracies differ, and noisy-validation
  model selection then ranks epochs by TTA accuracy too. A TTA accuracy is comparable only with TTA accuracies
  of the same views; published CIFAR-10N numbers are without it. A suite either applies it to every row or to
  none. The per-sample signals (clean scores, flags, detection P/R/F1) are computed without TTA.
* **EMA / Lookahead** changes which weights are evaluated and kept, so the per-sample signals too (the final
  probabilities come from the averaged model). Averaging also smooths the late fit of wrong labels, which is
  itself a noise-robustness mechanism (a mean-teacher flavour; ELR+ keeps its own weight average). Adopted, it is
  part of a protocol applied to every method, never a change to CE alone.
* **Whitening, identity init, BN-bias lr, alternating flips, airbench's optimiser settings (Muon included),
  BatchNorm, output scale and crop translation** change the network and its optimisation for every
  method alike: protocol changes. They make a new protocol version (a new suite); results of different suites
  are never pooled.
"""


def plan(rows: list[Row], label_sets: list[str], seeds: list[int], extra: tuple[str, ...], suite: str
         ) -> list[RunSpec]:
    specs = []
    for row in rows:
        for ls in label_sets:
            for seed in seeds:
                specs.append(RunSpec(suite, row.method, LABEL_SETS[ls], seed, row.preset, (*row.overrides, *extra)))
    return specs


# ------------------------------------------------------------------------------------------------ table
def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    m = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{m:.2f}"
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def _delta(values: list[float], base: list[float]) -> str:
    if not values or not base:
        return "–"
    return f"{100 * (statistics.fmean(values) - statistics.fmean(base)):+.2f}"


def table(results_dir: Path, rows: list[Row], extra: tuple[str, ...]) -> str:
    runs = read_suite(results_dir)
    got: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        got.setdefault((r.method, r.label_set), []).append(r.data)

    def acc(method: str, ls: str, kind: str) -> list[float]:
        out = []
        for d in got.get((method, ls), []):
            v = ((d.get("final") if kind == "last" else d.get("selected")) or {}).get("test_acc")
            if v is not None:
                out.append(float(v))
        return out

    def secs(method: str) -> list[float]:
        return [float(d["compute"]["seconds_per_epoch_median"]) for ls in LABEL_SETS
                for d in got.get((method, ls), []) if (d.get("compute") or {}).get("seconds_per_epoch_median")]

    def others(method: str) -> list[float]:
        return [float(d["compute"]["others_cpu_share_median"]) for ls in LABEL_SETS
                for d in got.get((method, ls), []) if (d.get("compute") or {}).get("others_cpu_share_median")
                is not None]

    def machines(method: str) -> set[tuple]:
        # (CPU name, torch's capability): files written before the capability was recorded give None, and a
        # row whose machines differ from the base row's gets no time ratio (like is compared with like only)
        return {((d.get("machine") or {}).get("cpu"), (d.get("machine") or {}).get("cpu_capability"))
                for ls in LABEL_SETS for d in got.get((method, ls), [])}

    by_name = {r.name: r for r in ROWS}
    elsewhere = []
    lines = [
        "# Recipe ablation (issue 21)",
        "",
        f"Generated by `benchmarks/recipe_ablation.py` from `{results_dir}/`; do not "
        "edit by hand. CE on the CPU protocol (`ce/cpu-cifar10n`: fastcnn 64/256/256, 12 epochs, batch 512, bf16, "
        "JPEG copy of CIFAR-10) with one recipe option on per row; *clean* = trained on the clean labels (the "
        "oracle), *worst* = CIFAR-10N worst (40.2% wrong labels). Test accuracy in %: *last* = last epoch, "
        "*sel.* = the epoch with the best noisy-validation accuracy (clean validation for the clean labels). "
        "Δ = against the base row, or for the float32 rows against `ce-fp32`, the protocol in float32 (like "
        "with like: a float32 row is never compared with a bf16 one). s/epoch = median training seconds per "
        "epoch (evaluation excluded), over the row's runs; ×base = its ratio to that same reference row's."
        + (f" Extra overrides on every run: `{' '.join(extra)}`." if extra else ""),
        "",
        "| row | what | clean last | Δ | worst sel. | Δ | worst last | Δ | s/epoch | ×base | meaning |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row.method
        base = by_name[row.ref].method
        base_secs = secs(base)
        s = secs(m)
        spe = f"{statistics.median(s):.1f}" if s else "–"
        ratio = f"{statistics.median(s) / statistics.median(base_secs):.2f}" if s and base_secs else "–"
        if s and base_secs and machines(m) != machines(base):
            ratio = "other CPU"
            elsewhere.append(f"`{m}` ran on " + ", ".join(f"{c} ({cap or 'capability not recorded'})"
                                                          for c, cap in sorted(machines(m), key=str))
                             + f", `{base}` on " + ", ".join(f"{c} ({cap or 'capability not recorded'})"
                                                              for c, cap in sorted(machines(base), key=str)))
        lines.append(f"| `{m}` | {row.what} | {_mean_sd(acc(m, 'clean', 'last'))} | "
                     f"{_delta(acc(m, 'clean', 'last'), acc(base, 'clean', 'last')) if m != base else ''} | "
                     f"{_mean_sd(acc(m, 'worst', 'selected'))} | "
                     f"{_delta(acc(m, 'worst', 'selected'), acc(base, 'worst', 'selected')) if m != base else ''} | "
                     f"{_mean_sd(acc(m, 'worst', 'last'))} | "
                     f"{_delta(acc(m, 'worst', 'last'), acc(base, 'worst', 'last')) if m != base else ''} | "
                     f"{spe} | {ratio} | {CHANGES_MEANING.get(row.name, '')} |")
    if elsewhere:
        lines += ["", "*other CPU*: not timed on the kind of machine its reference row was, so no ratio: "
                  + "; ".join(elsewhere) + "."]
    busy = sorted({m for m in (r.method for r in rows) if any(o > 0.1 for o in others(m))})
    lines += ["", "Rows with no number have not run yet. The `tta` row trains the base row's model exactly; its "
              "accuracy without TTA is the base row's."]
    if busy:
        lines.append(f"Other processes took more than 10% of the CPU during some epochs of {', '.join(busy)} "
                     "(`others_cpu_share` in the result files): their seconds per epoch are inflated.")
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


#: the float32 rows on clean labels drawn in the curves figure, and the oracle runs of the float32 airbench suite
#: beside them (the legacy recipe without label smoothing: the reference the Muon rows are read against)
CURVE_ROWS = ("fp32", "airbench-fp32", "muon-but-ls-fp32", "muon12-but-ls-fp32")
SUITE_ORACLES = ("cpu-cifar10n-airbench-fp32", "oracle")


def training_curve(data: dict) -> tuple[list[float], list[float], list[float]]:
    """``(epoch, training minutes so far, test accuracy %)`` at each evaluated epoch of one result file. The
    clock counts training only: rows evaluate at different intervals and with different test-time views."""
    epochs, minutes, acc = [], [], []
    clock = 0.0
    for row in data.get("epochs") or []:
        clock += float(row.get("train_seconds") or 0.0)
        if row.get("test_acc") is not None:
            epochs.append(row["epoch"] + 1)
            minutes.append(clock / 60.0)
            acc.append(100.0 * float(row["test_acc"]))
    return epochs, minutes, acc


def write_curves(path: Path, results_dir: Path) -> Path | None:
    """Test accuracy on clean labels per epoch and per training minute, float32 rows and the float32 suite's
    oracles, from the result files (None when matplotlib or every curve is missing)."""
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError:
        return None
    by_name = {r.name: r for r in ROWS}
    curves = []  # (label, curve)
    for name in CURVE_ROWS:
        for r in read_suite(results_dir):
            if r.method == by_name[name].method and r.label_set == "clean":
                curves.append((f"{r.method} (seed {r.data.get('seed')})", training_curve(r.data)))
    suite, method = SUITE_ORACLES
    for r in read_suite(results_dir.parent / suite):
        if r.method == method:
            curves.append((f"{suite} oracle (seed {r.data.get('seed')})", training_curve(r.data)))
    curves = [(label, c) for label, c in curves if c[0]]
    if not curves:
        return None
    fig = Figure(figsize=(11.0, 4.4), dpi=100, layout="constrained")
    by_epoch, by_time = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap = colormaps["tab10"]
    for i, (label, (epochs, minutes, acc)) in enumerate(curves):
        style = dict(color=cmap(i % 10), lw=1.3, marker="o", ms=3, label=label)
        by_epoch.plot(epochs, acc, **style)
        by_time.plot(minutes, acc, **style)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training minutes (evaluation excluded; 2 threads, AVX2 CPU)")
    for ax in (by_epoch, by_time):
        ax.set_ylabel("test accuracy (%), clean labels")
        ax.set_ylim(60, 95)
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=7, loc="lower right")
    fig.suptitle("Recipes in float32 on the JPEG copy of CIFAR-10 (one curve per result file)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


CURVES_PNG = "plots/recipe-ablation/fp32_clean_curves.png"


def write_table(path: Path, results_dir: Path, extra: tuple[str, ...]) -> None:
    # Every row, whatever ``--rows`` ran: the table is the whole ablation (a run of one row once rewrote it
    # with that row alone, dropping the committed others).
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table(results_dir, ROWS, extra)
    png = write_curves(path.parent / CURVES_PNG, results_dir) if not extra else None
    if png is not None:
        text += (f"\n## The float32 recipes per epoch and per training minute\n\n![float32 recipes on clean labels]"
                 f"({CURVES_PNG})\n\nThe minutes come from separate runs on the same kind of CPU, each shared with "
                 "other work to a different degree (`others_cpu_share` in the result files): read the right panel "
                 "for its shape, and the table's s/epoch column, not a single curve, for a time ratio.\n")
    path.write_text(text)


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(r.name for r in ROWS),
                    help="comma-separated rows (default: all, in the order of the module docstring)")
    ap.add_argument("--label-sets", default="clean,worst")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for every run (a tiny check: data.train_subset=500 train.epochs=1)")
    ap.add_argument("--suite-name", default=SUITE, help="results and run sub-folder name (keep tiny checks apart)")
    ap.add_argument("--results", default="benchmarks/results", help="results root (default benchmarks/results)")
    ap.add_argument("--runs", default="runs/bench", help="run folders root (default runs/bench)")
    ap.add_argument("--table", default="benchmarks/RECIPE_ABLATION.md")
    ap.add_argument("--threads", type=int, help="torch threads of each run process (see `noisyfit bench --threads`)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate, run nothing")
    ap.add_argument("--report", action="store_true", help="only rewrite the table")
    ap.add_argument("--allow-emulated-bf16", action="store_true",
                    help="run bf16 rows even on a CPU without bf16 kernels (see `noisyfit bench --help`)")
    args = ap.parse_args(argv)
    os.chdir(ROOT)  # run folders are recorded relative to the repository, as the bench records them

    by_name = {r.name: r for r in ROWS}
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    label_sets = [s.strip() for s in args.label_sets.split(",") if s.strip()]
    if unknown or any(s not in LABEL_SETS for s in label_sets):
        ap.error(f"rows are {', '.join(by_name)}; label sets are {', '.join(LABEL_SETS)}")
    rows = [by_name[n] for n in names]
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = tuple(args.set)
    results_dir = Path(args.results) / args.suite_name
    runs_root = Path(args.runs)
    table_path = Path(args.table)
    if args.report:
        write_table(table_path, results_dir, extra)
        print(f"wrote {table_path}")
        return 0

    specs = plan(rows, label_sets, seeds, extra, args.suite_name)
    est = Estimator.from_results(results_dir, ce_seconds_guess=15 * 60.0)
    status = {s.key: run_status(s, results_dir, runs_root) for s in specs}
    todo = [s for s in specs if status[s.key] != "done"]
    left = [run_estimate(est, s, status[s.key], runs_root) for s in todo]
    total = None if any(v is None for v in left) else sum(left)
    print(f"recipe ablation: {len(specs)} run(s), {len(todo)} to go, about {fmt_duration(total)}")
    slow = emulated_bf16_note(todo)
    if slow and not args.dry_run and not args.allow_emulated_bf16:
        print(f"recipe ablation: {slow} Run it on a machine with bf16 kernels, or pass --allow-emulated-bf16.",
              file=sys.stderr)
        return 2
    if args.dry_run:
        if slow:
            print(f"warning: {slow}")
        for s in specs:
            print(f"  {status[s.key]:<8} {s.method:<20} {s.label_set.name:<6} seed {s.seed}  "
                  f"{s.config} {' '.join(s.overrides)}")
        return 0

    def stop(signum, frame):  # `kill <pid>`: stop the child at its checkpoint, as the bench does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    failed = 0
    try:
        # Each run is held by its own lock (as the bench's): two ablation processes, say one per label
        # set, each take the runs the other does not hold.
        for i, spec in enumerate(specs, 1):
            tag = f"[{i}/{len(specs)}] {spec.method} · {spec.label_set.name} · seed {spec.seed}"
            try:
                with run_lock(spec.run_dir(runs_root)):
                    if run_status(spec, results_dir, runs_root) == "done":
                        print(f"{tag}: have results, skip")
                        continue
                    print(f"{tag}: running (about {fmt_duration(run_estimate(est, spec, 'todo', runs_root))})",
                          flush=True)
                    outcome, info = execute(spec, results_dir, runs_root, python=sys.executable,
                                            threads=args.threads)
            except RunLocked as held:
                print(f"{tag}: another process (pid {held.pid}) is running it, skip", flush=True)
                continue
            if outcome in ("ran", "collected"):
                res = info["results"]
                est.add(spec.method, float(res["bench"]["wall_seconds"] or info["seconds"]))
                print(f"{tag}: {outcome} in {fmt_duration(info['seconds'])}, last test acc "
                      f"{100 * res['final']['test_acc']:.2f}%", flush=True)
            else:
                failed += 1
                print(f"{tag}: {outcome.upper()}; log: {spec.run_dir(runs_root) / 'bench.log'}\n"
                      + "\n".join("    " + s for s in (info.get("note") or {}).get("log_tail", "")
                                  .splitlines()[-8:]), flush=True)
            write_table(table_path, results_dir, extra)
    except KeyboardInterrupt:
        print("stopped; the run in progress keeps its last checkpoint. Start the same command again to continue.")
        return 130
    write_table(table_path, results_dir, extra)
    print(f"wrote {table_path}; results in {results_dir}" + (f"; {failed} run(s) failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
