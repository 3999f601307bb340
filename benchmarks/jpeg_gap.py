"""How much accuracy the lossy JPEG copy of CIFAR-10 costs (issue 21): the same images, lossless and JPEG.

Every bench number trains and tests on ``cifar10-jpeg.tar.gz`` (median PSNR 30.5 dB against the original
pixels), while airbench's 94% and the papers' figures use the original pixels. The full lossless set is not
on this machine, but ``cifar10_lossless_partial.npz`` holds the original pixels of 5,085 training and 1,017
test images. So: train CE on those 5,085 images twice, once from the original pixels and once from their JPEG
files (same positions, same labels, same seed, so the same batches and augmentation draws), and test every
model on both versions of the 1,017 test images. The 2 x 2 table separates the two costs:

* training on JPEG rather than lossless pixels (test fixed), and
* testing on JPEG rather than lossless pixels (model fixed; a paired comparison on the same 1,017 images).

It is a 5,085-image measurement (a tenth of CIFAR-10), so its accuracies sit far below the full set's; the
gap is what it reports, with the caveat that a gap at this scale need not equal the gap at 50,000 images.

Recipe: ``ce/cpu-cifar10n-long`` (fastcnn 64/256/256, batch 128, lr 0.05 with a 2-epoch warm-up, bf16) on
all 5,085 images (no subset, no validation hold-out), ``--epochs`` epochs (default 20); ``--set`` adds
overrides (e.g. a recipe option of issue 21). Alignment is checked first: the median PSNR between the two
versions must be that of the data README (about 30.5 dB); a misaligned pair would stop the script (exit 2).

Each run is one :class:`noisyfit.engine.trainer.Trainer` in ``runs/jpeg-gap/<tag>/<train version>/seed<S>/``
(resumable: a cut run continues from its checkpoint); its result goes to
``benchmarks/results/jpeg-gap/<tag>__<train version>__seed<S>.json`` and a finished one is skipped. The table
``benchmarks/JPEG_GAP.md`` is rewritten from the result files after every run.

A second, cheaper measurement needs no training: ``--evaluate RUN_DIR`` takes a finished run trained on the
whole JPEG training set (a bench run, say the oracle of a suite) and tests its model (``model.pt``: the
weights of the epoch its validation split selected, or of its last epoch without one, as ``noisyfit predict``
uses them) on both versions of the same 1,017 test images, with the run's own test-time augmentation and
without it. That is the testing half of the gap at full scale, paired on the
same images; its result goes to ``benchmarks/results/jpeg-gap/eval__<tag>.json``.

    .venv/bin/python benchmarks/jpeg_gap.py --seeds 0,1,2 --threads 1
    .venv/bin/python benchmarks/jpeg_gap.py --evaluate runs/bench/cpu-cifar10n-airbench/oracle/clean/seed0 \
        --tag airbench-oracle-seed0
    .venv/bin/python benchmarks/jpeg_gap.py --spectrum
    .venv/bin/python benchmarks/jpeg_gap.py --report

A third needs no model (seconds): ``--spectrum`` looks at what the airbench recipe's whitening stem
(``noisyfit.models.whitening``) sees in each version. It takes the 2x2 patches of the 5,085 training images,
normalised by their own version's channel statistics as the trainer would, and gives per eigen-direction of
the second moment (largest first) the eigenvalue of each version and the gain ``1/sqrt(lambda + eps)`` the
stem would apply. Along each eigen-direction of the JPEG version (the ones its stem amplifies) it also gives
the compression error relative to the signal: the second moment of the JPEG-minus-original patch differences
along it over the original patches' (0 = untouched; 1 = the error is as large as what the original had there). Its result goes to
``benchmarks/results/jpeg-gap/whitening_spectrum.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "benchmarks" / "results" / "jpeg-gap"
TABLE = ROOT / "benchmarks" / "JPEG_GAP.md"
RUNS = ROOT / "runs" / "jpeg-gap"
PRESET = "ce/cpu-cifar10n-long"
VERSIONS = ("lossless", "jpeg")
#: the data README's figure for these same pairs; a misaligned pair gives about 10 dB
EXPECTED_PSNR = 30.5


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 [N, H, W, C] arrays."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


def load_pairs(data_dir: Path) -> dict:
    """The original and the JPEG pixels of the partial set's training and test positions, with labels."""
    from noisyfit.data.cifar10_jpeg import load_cifar10_jpeg

    with np.load(data_dir / "cifar10_lossless_partial.npz") as z:
        part = {k: z[k] for k in ("train_idx", "x_train", "y_train", "test_idx", "x_test", "y_test")}
    jpeg = load_cifar10_jpeg(data_dir, progress=False)
    out = {}
    for split, full in (("train", jpeg.train), ("test", jpeg.test)):
        idx = part[f"{split}_idx"]
        if not np.array_equal(full.labels[idx], part[f"y_{split}"]):
            raise SystemExit(f"the JPEG {split} labels at the partial set's positions differ from its labels")
        out[split] = {"lossless": part[f"x_{split}"], "jpeg": full.x[idx], "y": part[f"y_{split}"],
                      "class_names": full.class_names, "index": idx}
    return out


def check_alignment(pairs: dict) -> dict:
    figures = {}
    for split in ("train", "test"):
        p = psnr(pairs[split]["lossless"], pairs[split]["jpeg"])
        figures[split] = {"median_psnr_db": round(float(np.median(p)), 2), "min_psnr_db": round(float(p.min()), 2),
                          "images": int(len(p))}
        if abs(figures[split]["median_psnr_db"] - EXPECTED_PSNR) > 1.0:
            print(f"error: {split} pairs have a median PSNR of {figures[split]['median_psnr_db']} dB, not about "
                  f"{EXPECTED_PSNR}: the two versions are not the same images", file=sys.stderr)
            raise SystemExit(2)
    return figures


def labeled(pairs: dict, split: str, version: str):
    from noisyfit.data.labeled import LabeledData

    d = pairs[split]
    return LabeledData(np.ascontiguousarray(d[version]), d["y"].astype(np.int64), list(d["class_names"]),
                       true_labels=d["y"].astype(np.int64), name=f"cifar10-{version}-partial/{split}")


def run_one(pairs: dict, tag: str, version: str, seed: int, epochs: int, overrides: list[str],
            threads: int | None, runs: Path = RUNS) -> dict:
    import torch

    from noisyfit.config import load_config
    from noisyfit.data.labeled import DatasetSplits
    from noisyfit.engine.ema import eval_weights
    from noisyfit.engine.run_data import to_device_tensor
    from noisyfit.engine.trainer import Trainer

    over = ["data.train_subset=null", "data.val_fraction=0", "train.track_fit=false", f"train.epochs={epochs}",
            f"train.seed={seed}", "train.progress=false", *overrides]
    if threads:
        over.append(f"train.threads={threads}")
    cfg = load_config(PRESET, over)
    out = runs / tag / version / f"seed{seed}"
    splits = DatasetSplits(labeled(pairs, "train", version), labeled(pairs, "test", version))
    resume = (out / "checkpoint.pt").is_file()
    t0 = time.time()
    tr = Trainer(cfg, out, splits=splits, resume=resume, command=sys.argv)
    res = tr.fit()
    accs = {}
    with torch.no_grad(), eval_weights(tr.weight_avg, tr.method):
        for test_version in VERSIONS:
            x = to_device_tensor(labeled(pairs, "test", test_version), tr.device)
            y = torch.from_numpy(pairs["test"]["y"]).to(tr.device)
            accs[test_version] = tr.accuracy_on(x, y)
    return {"tag": tag, "train_version": version, "seed": seed, "epochs": epochs, "preset": PRESET,
            "set": list(overrides), "overrides": over, "test_acc": accs, "train_images": int(len(pairs["train"]["y"])),
            "test_images": int(len(pairs["test"]["y"])),
            "train_seconds_total": res["compute"].get("train_seconds_total"),
            "wall_seconds_this_session": round(time.time() - t0, 1), "resumed": resume,
            "machine": res.get("machine"), "commit": res.get("commit"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def evaluate_run(pairs: dict, run_dir: Path, threads: int | None = None) -> dict:
    """A finished run's model (its ``model.pt``) on both versions of the 1,017 test images, with and without
    the run's test-time augmentation."""
    import torch

    from noisyfit.config import ConfigError
    from noisyfit.predictor import PredictorError, load_predictor

    if threads:
        torch.set_num_threads(threads)
    try:  # the model as `noisyfit predict` uses it: the run's weights, normalisation, precision and views
        with_views = load_predictor(run_dir, device="cpu")
        one_view = load_predictor(run_dir, device="cpu", tta="none")
    except PredictorError as e:
        raise ConfigError(str(e)) from None
    names = [str(c) for c in pairs["test"]["class_names"]]
    if with_views.class_names != names:
        raise ConfigError(f"{run_dir}: its classes {with_views.class_names} are not CIFAR-10's {names}")
    results = json.loads((run_dir / "results.json").read_text())
    y = pairs["test"]["y"]
    accs = {"run_tta": {}, "no_tta": {}}
    for version in VERSIONS:
        x = np.ascontiguousarray(pairs["test"][version])
        accs["run_tta"][version] = float(np.mean(with_views.predict(x) == y))
        accs["no_tta"][version] = float(np.mean(one_view.predict(x) == y))
    return {"kind": "evaluate", "run": str(run_dir), "run_command": results.get("command"),
            "model": with_views.record, "run_test_acc": with_views.record.get("test_acc"),
            "eval_tta": with_views.tta, "precision": with_views.precision, "test_acc": accs,
            "test_images": int(len(y)), "machine": results.get("machine"),
            "commit": results.get("commit"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def whitening_spectrum(pairs: dict, k: int = 2) -> dict:
    """Eigenvalues and whitening gains of the ``k x k`` patches of both training versions, and the compression
    error relative to the signal along the JPEG version's eigen-directions."""
    import torch

    from noisyfit.data.augment import channel_stats
    from noisyfit.models.whitening import WHITEN_EPS, patch_second_moment

    train = {v: pairs["train"][v].astype(np.float64) / 255 for v in VERSIONS}
    stats = {v: channel_stats(pairs["train"][v]) for v in VERSIONS}  # each version by its own, as a trainer would

    def moment(x: np.ndarray, version: str, centre: bool = True) -> torch.Tensor:
        mean, std = (t.double().view(1, -1, 1, 1) for t in stats[version])
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        return patch_second_moment(((t - mean) if centre else t) / std, k)

    out: dict = {"kind": "whitening_spectrum", "patch": k, "eps": WHITEN_EPS, "train_images": int(len(train["jpeg"])),
                 "normalisation": "each version by its own channel mean and std", "versions": {}}
    basis = None
    for v in VERSIONS:
        values, vectors = torch.linalg.eigh(moment(train[v], v))
        values, vectors = values.flip(0), vectors.flip(1)  # largest first
        basis = vectors if v == "jpeg" else basis
        out["versions"][v] = {"eigenvalues": [float(e) for e in values],
                              "gains": [float(g) for g in 1 / torch.sqrt(values.clamp(min=0) + WHITEN_EPS)]}
    # along the JPEG directions (the ones its stem amplifies), in the JPEG normalisation: v^T M v of the
    # compression error (JPEG - original, no centring: a difference) over that of the original patches
    along = lambda m: torch.einsum("ij,ik,kj->j", basis, m, basis)  # noqa: E731
    error = along(moment(train["jpeg"] - train["lossless"], "jpeg", centre=False))
    signal = along(moment(train["lossless"], "jpeg"))
    out["error_over_signal_jpeg_basis"] = [float(a) for a in error / signal]
    out["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return out


def _spectrum_lines(sp: dict) -> list[str]:
    lo, jp = sp["versions"]["lossless"], sp["versions"]["jpeg"]
    lines = ["## What the whitening stem sees in each version (`--spectrum`)", "",
             f"The {sp['patch']}x{sp['patch']} patches of the {sp['train_images']:,} paired training images, "
             f"{sp['normalisation']}: eigenvalues of their second moment (largest first), the gain "
             f"1/sqrt(λ + {sp['eps']:g}) the airbench stem gives each direction, and along the JPEG version's "
             "directions the compression error over the signal: the second moment of the JPEG − original patch "
             "differences along it over the original patches' (0 = untouched, 1 = an error as large as the signal "
             "there).", "",
             "| direction | λ lossless | λ JPEG | gain lossless | gain JPEG | JPEG gain ÷ lossless | error ÷ signal |",
             "|---|---|---|---|---|---|---|"]
    for i, (a, b) in enumerate(zip(lo["eigenvalues"], jp["eigenvalues"])):
        ga, gb = lo["gains"][i], jp["gains"][i]
        lines.append(f"| {i + 1} | {a:.2e} | {b:.2e} | {ga:.1f} | {gb:.1f} | {gb / ga:.2f} | "
                     f"{sp['error_over_signal_jpeg_basis'][i]:.2f} |")
    return lines + [""]


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    m = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.2f} (n=1)"
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f} (n={len(values)})"


def write_table(results_dir: Path = RESULTS, table: Path = TABLE) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))
            if "__" in p.name and not p.name.startswith("eval__")]
    evals = {p.name[len("eval__"):-len(".json")]: json.loads(p.read_text())
             for p in sorted(results_dir.glob("eval__*.json"))}
    align = results_dir / "alignment.json"
    lines = ["# What the JPEG copy of CIFAR-10 costs (issue 21)", "",
             "Generated by `benchmarks/jpeg_gap.py` from `benchmarks/results/jpeg-gap/`; do not edit by hand. CE "
             "trained on the 5,085 CIFAR-10 training images whose original pixels we have "
             "(`cifar10_lossless_partial.npz`), once from those pixels and once from their JPEG files, tested on "
             "both versions of the 1,017 test images we have in both. Test accuracy in % (mean ± sd over seeds, "
             "last epoch); Δ rows are paired per seed (same seed, same batches).", ""]
    if align.is_file():
        a = json.loads(align.read_text())
        lines += [f"Alignment: median PSNR of the pairs {a['train']['median_psnr_db']} dB (train), "
                  f"{a['test']['median_psnr_db']} dB (test); the data README gives {EXPECTED_PSNR} dB.", ""]
    for tag in sorted({r["tag"] for r in runs}):
        mine = [r for r in runs if r["tag"] == tag]
        ex = mine[0]
        lines += [f"## `{tag}`: {ex['preset']}, {ex['epochs']} epochs" + "".join(f", `{o}`" for o in ex["set"]), "",
                  "| trained on | tested on lossless | tested on JPEG | JPEG test − lossless test |", "|---|---|---|---|"]
        by = {(r["train_version"], r["seed"]): r for r in mine}
        for version in VERSIONS:
            rs = [r for r in mine if r["train_version"] == version]
            lo = [r["test_acc"]["lossless"] for r in rs]
            jp = [r["test_acc"]["jpeg"] for r in rs]
            lines.append(f"| {version} | {_mean_sd(lo)} | {_mean_sd(jp)} | "
                         f"{_mean_sd([b - a for a, b in zip(lo, jp)])} |")
        seeds = sorted({s for v, s in by if ("lossless", s) in by and ("jpeg", s) in by})
        for test_version in VERSIONS:
            d = [by["jpeg", s]["test_acc"][test_version] - by["lossless", s]["test_acc"][test_version] for s in seeds]
            lines.append(f"| Δ JPEG − lossless training, tested on {test_version} | | | {_mean_sd(d)} |")
        secs = [r["train_seconds_total"] for r in mine if r.get("train_seconds_total")]
        if secs:
            lines += ["", f"Training seconds per run: {min(secs):.0f}-{max(secs):.0f} (runs given one thread each "
                          "beside other jobs: not a speed figure)."]
        lines.append("")
    if evals:
        lines += ["## Whole-set models tested on both versions of the same 1,017 test images", "",
                  "`--evaluate`: a finished run trained on all JPEG training images, its model (`model.pt`: the "
                  "selected epoch's weights, or the last epoch's) tested on the original pixels and on their JPEG "
                  "files; paired on the same images, one model each (no seeds to average).", "",
                  "| tag | run | its TTA | lossless | JPEG | JPEG − lossless | no TTA: lossless | JPEG | "
                  "JPEG − lossless |", "|---|---|---|---|---|---|---|---|---|"]
        for tag, e in evals.items():
            t, n = e["test_acc"]["run_tta"], e["test_acc"]["no_tta"]
            lines.append(f"| `{tag}` | `{e['run']}` | {e['eval_tta']} | {100 * t['lossless']:.2f} | "
                         f"{100 * t['jpeg']:.2f} | {100 * (t['jpeg'] - t['lossless']):+.2f} | "
                         f"{100 * n['lossless']:.2f} | {100 * n['jpeg']:.2f} | "
                         f"{100 * (n['jpeg'] - n['lossless']):+.2f} |")
        lines.append("")
    spectrum = results_dir / "whitening_spectrum.json"
    if spectrum.is_file():
        lines += _spectrum_lines(json.loads(spectrum.read_text()))
    text = "\n".join(lines)
    table.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--tag", default="base", help="name of this recipe's rows (default: base)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--report", action="store_true", help="only rewrite the table")
    ap.add_argument("--evaluate", type=Path, metavar="RUN_DIR",
                    help="test a finished whole-set run on both versions of the 1,017 test images (needs --tag)")
    ap.add_argument("--spectrum", action="store_true",
                    help="the whitening stem's view of both versions: eigenvalues, gains, artefact shares (seconds)")
    ap.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)  # tests
    ap.add_argument("--runs", type=Path, default=RUNS, help=argparse.SUPPRESS)
    ap.add_argument("--table", type=Path, default=TABLE, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.report:
        print(write_table(args.results, args.table))
        return 0
    from noisyfit.data.paths import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is None or not (data_dir / "cifar10_lossless_partial.npz").is_file():
        print(f"error: no cifar10_lossless_partial.npz in {data_dir}; give --data-dir", file=sys.stderr)
        return 2
    if args.evaluate is not None and args.tag == "base":
        print("error: --evaluate needs a --tag naming the run (e.g. airbench-oracle-seed0)", file=sys.stderr)
        return 2
    if args.set and args.tag == "base":
        print("error: --set changes the recipe: give it its own --tag", file=sys.stderr)
        return 2
    pairs = load_pairs(data_dir)
    args.results.mkdir(parents=True, exist_ok=True)
    if args.evaluate is not None:
        return _evaluate(pairs, args)
    align = check_alignment(pairs)
    if args.spectrum:
        dest = args.results / "whitening_spectrum.json"
        if dest.is_file():  # a result file is evidence: never overwritten
            print(f"error: {dest} exists", file=sys.stderr)
            return 2
        dest.write_text(json.dumps(whitening_spectrum(pairs), indent=1) + "\n")
        print(write_table(args.results, args.table))
        return 0
    if not (args.results / "alignment.json").is_file():
        (args.results / "alignment.json").write_text(json.dumps(align, indent=1) + "\n")
    print(f"aligned: median PSNR {align['train']['median_psnr_db']} dB (train), {align['test']['median_psnr_db']} "
          f"dB (test)", flush=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for version in VERSIONS:
            dest = args.results / f"{args.tag}__{version}__seed{seed}.json"
            if dest.is_file():
                print(f"{dest.name}: have results, skip", flush=True)
                continue
            print(f"{args.tag} · trained on {version} · seed {seed}: running", flush=True)
            r = run_one(pairs, args.tag, version, seed, args.epochs, args.set, args.threads, args.runs)
            dest.write_text(json.dumps(r, indent=1) + "\n")
            print(f"  test acc: lossless {100 * r['test_acc']['lossless']:.2f}%, JPEG {100 * r['test_acc']['jpeg']:.2f}%"
                  f" ({r['train_seconds_total']:.0f} s of training)", flush=True)
            write_table(args.results, args.table)
    print(write_table(args.results, args.table))
    return 0


def _evaluate(pairs: dict, args) -> int:
    from noisyfit.config import ConfigError

    dest = args.results / f"eval__{args.tag}.json"
    if dest.is_file():  # a result file is evidence: never overwritten
        print(f"error: {dest} exists; give another --tag", file=sys.stderr)
        return 2
    try:
        r = evaluate_run(pairs, args.evaluate, args.threads)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dest.write_text(json.dumps(r, indent=1) + "\n")
    t = r["test_acc"]["run_tta"]
    print(f"{args.tag}: lossless {100 * t['lossless']:.2f}%, JPEG {100 * t['jpeg']:.2f}% (its TTA: {r['eval_tta']})")
    write_table(args.results, args.table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
