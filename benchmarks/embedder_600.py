"""Acceptance measurement of issue 19 (embedder audit): 600 CIFAR images, 93 in a wrong class folder.

The setting of the issue, with an embedder that never saw the audited classes:

1. the project's own fastcnn (CPU protocol: ``ce/cpu-cifar10n``, 12 epochs, bf16) trained on CIFAR-10
   classes 0-4 (25,000 training images, clean labels; test accuracy on their 5,000 test images);
2. its backbone exported with ``noisyfit export-backbone`` to torch.export (.pt2) and ONNX;
3. an image folder of 600 training images drawn from classes 5-9 (``--classes``, by default the first
   four of them, 150 each, as the issue's 4-class folder), 93 of them (15.5 %) moved to another class
   folder chosen at random; the truth is kept in ``truth.json`` beside the folder;
4. audits of that folder, each a ``noisyfit audit`` process timed from start to end (wall time, as a
   user waits): the embedder (.pt2 with logistic regression, .onnx, .pt2 with the MLP classifier, the
   run folder itself) and the default without an embedder (out-of-fold pixel MLP);
5. per audit: precision, recall and F1 of the flags against the moved images, AUROC of the out-of-fold
   p(given label), accuracy of the suggested labels on the correctly flagged images, the estimated noise
   rate, the model-quality figures (agreement with the given labels per fold) and the seconds.

Writes ``benchmarks/results/embedder/600-autoC.json`` and ``600-autoC.md`` (``600-testsplit.*`` with
``--embedder-set test-split``; ``--stem NAME`` for another name). A committed result is evidence: the script
refuses to overwrite one (give a new ``--stem``). ``600.json``/``600.md`` are the first measurement (commit
40e3bcf, the logistic regression's C fixed at 0.1), kept as committed; ``600-fixedC.*`` is a byte-identical
copy of them. Run folders and the image folder go to
``runs/embedder-600/`` (not committed). Resumable: a finished training run, export or audit is reused
(``--redo`` runs the audits again). Run it alone on the machine (DEVELOPERS.md): the training is the
CPU protocol's CE on half of CIFAR-10, about half of its 13-15 minutes.

    python benchmarks/embedder_600.py                       # data from ../shared/data (cifar10-jpeg.tar.gz)
    python benchmarks/embedder_600.py --classes 5,6,7,8,9   # five classes, 120 images each
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "noisyfit.cli"]


def run(cmd: list[str], log: Path) -> float:
    """Run one noisyfit command, its output to ``log``; returns the wall seconds (exits on failure)."""
    print("$", " ".join(cmd), flush=True)
    t = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
    seconds = time.time() - t
    if rc != 0:
        sys.exit(f"failed ({rc}) after {seconds:.0f} s; see {log}")
    print(f"  {seconds:.1f} s", flush=True)
    return seconds


def embedder_data(work: Path, data_dir: str | None) -> Path:
    """CIFAR-10 classes 0-4 (train and test) as an npz data set for `noisyfit train`."""
    from noisyfit.data.labeled import DatasetSplits
    from noisyfit.data.tabular import save_npz

    path = work / "cifar10-classes0-4.npz"
    if path.is_file():
        return path
    from noisyfit.data.sources import load_dataset

    splits = load_dataset("cifar10", data_dir)
    keep = lambda d: d.subset(np.flatnonzero(d.labels < 5))  # noqa: E731
    train, test = keep(splits.train), keep(splits.test)
    names = splits.train.class_names[:5]
    train.class_names, test.class_names = names, names
    save_npz(DatasetSplits(train, test), path)
    print(f"{path}: {len(train)} training and {len(test)} test images of {names}")
    return path


def embedder_data_test_split(work: Path, data_dir: str | None, audited: set[int]) -> Path:
    """The second setting: the CIFAR-10 *test* split (all 10 classes, 10,000 images) to train the embedder on,
    so it has seen the audited classes but none of the audited images or their labels (as an ImageNet network
    has seen dogs and ships, not the user's photos); its test set, for its accuracy only, is 2,000
    training-split images outside the audited folder."""
    from noisyfit.data.labeled import DatasetSplits
    from noisyfit.data.tabular import save_npz

    path = work / "cifar10-testsplit-all.npz"
    if path.is_file():
        return path
    from noisyfit.data.sources import load_dataset

    splits = load_dataset("cifar10", data_dir)
    rest = np.setdiff1d(np.arange(len(splits.train)), sorted(audited))
    held = np.random.default_rng(1).choice(rest, 2000, replace=False)
    save_npz(DatasetSplits(splits.test, splits.train.subset(np.sort(held))), path)
    print(f"{path}: the 10,000 test-split images as training data, 2,000 other training images as its test set")
    return path


def audit_folder(work: Path, data_dir: str | None, classes: list[int], total: int, wrong: int, seed: int) -> tuple[Path, dict]:
    """``total`` training images of ``classes`` as root/<class>/<file>.png, ``wrong`` of them in another class folder."""
    folder = work / f"folder{total}-{'-'.join(map(str, classes))}-wrong{wrong}-seed{seed}"
    truth_file = folder.with_name(folder.name + ".truth.json")
    if truth_file.is_file():
        return folder, json.loads(truth_file.read_text())
    from PIL import Image

    from noisyfit.data.sources import load_dataset

    train = load_dataset("cifar10", data_dir).train
    rng = np.random.default_rng(seed)
    per = total // len(classes)
    picked = np.concatenate([rng.choice(np.flatnonzero(train.labels == c), per, replace=False) for c in classes])
    moved = set(rng.choice(len(picked), wrong, replace=False).tolist())
    truth = {}
    for k, i in enumerate(picked.tolist()):
        true = train.class_names[train.labels[i]]
        given = true
        if k in moved:
            others = [train.class_names[c] for c in classes if train.class_names[c] != true]
            given = others[int(rng.integers(len(others)))]
        (folder / given).mkdir(parents=True, exist_ok=True)
        file_id = f"{given}/cifar{i:05d}.png"
        Image.fromarray(train.x[i]).save(folder / file_id)
        truth[file_id] = {"true": true, "given": given}
    truth_file.write_text(json.dumps(truth, indent=0))
    print(f"{folder}: {len(truth)} images, {wrong} in a wrong class folder")
    return folder, truth


def score(out: Path, truth: dict, folder: Path) -> dict:
    """Flags, suggestions and the out-of-fold p(given) of one audit folder against the truth."""
    from sklearn.metrics import roc_auc_score

    summary = json.loads((out / "summary.json").read_text())
    with open(out / "issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = {i for i, t in truth.items() if t["true"] != t["given"]}
    flagged = {r["id"] for r in rows}
    tp = flagged & wrong
    precision = len(tp) / len(flagged) if flagged else None
    recall = len(tp) / len(wrong)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    suggested_ok = [r["suggested_label"] == truth[r["id"]]["true"] for r in rows if r["id"] in wrong]
    # out-of-fold p(given label) of every image, in the folder's row order
    if (out / "pred_probs.npz").is_file():  # an embedder audit: with ids and labels
        with np.load(out / "pred_probs.npz") as z:
            probs, ids, labels = z["pred_probs"], [str(i) for i in z["ids"]], z["labels"]
    else:  # audits without an embedder: rows = the folder's training examples in order
        from noisyfit.data.sources import load_dataset

        train = load_dataset(f"folder:{folder}").train
        ids, labels = train.ids, train.labels
        if (out / "pred_probs.npy").is_file():  # --oof: the out-of-fold probabilities
            probs = np.load(out / "pred_probs.npy")
        else:  # the default: one run on every example; its final model's in-sample probabilities
            with np.load(out / "run" / "per_sample.npz") as z:
                probs = np.zeros_like(z["probs"])
                probs[z["train_index"]] = z["probs"]
    p_given = probs[np.arange(len(ids)), labels]
    is_wrong = np.array([i in wrong for i in ids])
    return {"flagged": len(flagged), "true_positives": len(tp), "wrong": len(wrong), "precision": precision,
            "recall": recall, "f1": f1, "auroc": float(roc_auc_score(is_wrong, -p_given)),
            "suggestion_accuracy": float(np.mean(suggested_ok)) if suggested_ok else None,
            "estimated_noise_rate": summary.get("estimated_noise_rate"), "true_noise_rate": len(wrong) / len(truth),
            "mode": summary.get("mode"), "model_quality": summary.get("model_quality"),
            # the logistic regression's C per outer fold, when it was chosen on inner folds (C="auto")
            "C_chosen": [f["C_chosen"] for f in (summary.get("cross_fit") or {}).get("per_fold") or []
                         if "C_chosen" in f] or None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: noisyfit's lookup: ../shared/data)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "embedder-600"))
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "embedder"))
    ap.add_argument("--classes", default="5,6,7,8", help="CIFAR-10 classes of the audited folder (from 5-9)")
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--wrong", type=int, default=93)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedder-set", choices=["others", "test-split"], default="others",
                    help="train the embedder on CIFAR-10 classes 0-4 (never saw the audited classes; the issue's "
                         "setting) or on the test split of all 10 classes (saw the classes, not the images)")
    ap.add_argument("--redo", action="store_true", help="run the audits again")
    ap.add_argument("--stem", help="result file name without extension (default 600-autoC, or 600-testsplit); "
                                   "an existing result file is never overwritten")
    ap.add_argument("--skip-pixel-mlp", action="store_true", help="leave out the default (no embedder) audit")
    a = ap.parse_args()
    import os

    os.chdir(ROOT)  # noisyfit looks for ../shared/data from the working folder
    classes = [int(c) for c in a.classes.split(",")]
    if any(c < 5 for c in classes):
        sys.exit("--classes: the audited classes must be ones the embedder never saw (5-9)")
    work, results = Path(a.work), Path(a.results)
    work.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    stages: dict = {}

    # 3 first: the audited folder (the test-split embedder must avoid its images)
    folder, truth = audit_folder(work, a.data_dir, classes, a.images, a.wrong, a.seed)

    # 1. the embedder: fastcnn at the CPU protocol, on classes 0-4 or on the test split
    if a.embedder_set == "others":
        npz, tag = embedder_data(work, a.data_dir), "classes0-4"
    else:
        audited = {int(k.rsplit("cifar", 1)[1].split(".")[0]) for k in truth}
        npz, tag = embedder_data_test_split(work, a.data_dir, audited), "testsplit"
    run_dir = work / f"fastcnn-ce-{tag}"
    if not (run_dir / "results.json").is_file():
        resume = ["--resume"] if (run_dir / "checkpoint.pt").is_file() else []
        stages["train_seconds"] = run([*CLI, "train", "--config", "ce/cpu-cifar10n", "--dataset", f"npz:{npz}",
                                       "--out", str(run_dir), *resume], work / "train.log")
    trained = json.loads((run_dir / "results.json").read_text())
    stages["embedder_run"] = {"test_acc": (trained.get("final") or {}).get("test_acc"),
                              "train_seconds_total": (trained.get("compute") or {}).get("train_seconds_total")}

    # 2. exports
    files = {}
    for suffix in (".pt2", ".onnx"):
        f = work / f"fastcnn-{tag}{suffix}"
        if not f.is_file():
            stages[f"export{suffix}_seconds"] = run([*CLI, "export-backbone", str(run_dir), "--out", str(f)],
                                                    work / f"export{suffix}.log")
        files[suffix] = f

    # 4. audits
    audits = {
        "embedder .pt2 + logreg": ["--embedder", str(files[".pt2"])],
        "embedder .pt2 + logreg, C = 0.1 (the former fixed default)": ["--embedder", str(files[".pt2"]),
                                                                       "--logreg-c", "0.1"],
        "embedder .onnx + logreg": ["--embedder", str(files[".onnx"])],
        "embedder .pt2 + mlp": ["--embedder", str(files[".pt2"]), "--classifier", "mlp"],
        "embedder run folder + logreg": ["--embedder", str(run_dir)],
    }
    if not a.skip_pixel_mlp:  # no embedder: the audit's default (one ELR run) and its former default (--oof)
        audits["default, no embedder (one ELR run, pixel MLP)"] = []
        audits["--oof, no embedder (5-fold pixel MLP + CL)"] = ["--oof"]
    rows = {}
    for name, flags in audits.items():
        out = work / ("audit-" + ("" if a.embedder_set == "others" or not flags or flags == ["--oof"] else
                                  "testsplit-") + "".join(ch if ch.isalnum() else "-" for ch in name).strip("-"))
        timing = out / "wall_seconds.json"
        if a.redo or not timing.is_file():
            seconds = run([*CLI, "audit", f"folder:{folder}", *flags, "--out", str(out), "--overwrite", "--no-progress"],
                          out.with_suffix(".log"))
            timing.write_text(json.dumps({"wall_seconds": seconds}))
        rows[name] = {**score(out, truth, folder), **json.loads(timing.read_text()), "flags": flags}

    report = {"issue": 19, "setting": {"images": a.images, "wrong": a.wrong, "classes": classes, "seed": a.seed,
                                       "folder": str(folder)},
              "embedder": {"backbone": "fastcnn 64/256/256", "preset": "ce/cpu-cifar10n", "trained_on": {
                  "others": "CIFAR-10 classes 0-4 (train split, clean labels): never saw the audited classes",
                  "test-split": "the CIFAR-10 test split, all 10 classes (clean labels): saw the audited classes, "
                                "none of the audited images"}[a.embedder_set], **stages}, "audits": rows,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    # "autoC": the logistic regression's C chosen on inner folds (the default since 600-fixedC was measured)
    stem = a.stem or ("600-autoC" if a.embedder_set == "others" else "600-testsplit")
    taken = [p for p in (results / f"{stem}.json", results / f"{stem}.md") if p.exists()]
    if taken:
        raw = work / f"{stem}.unsaved.json"
        raw.write_text(json.dumps(report, indent=2))
        print(f"{taken[0]} exists and a result file is evidence: not overwritten. This measurement is in {raw}; "
              "run again with --stem NEW_NAME to store it under a new name (finished audits are reused).",
              file=sys.stderr)
        sys.exit(2)
    (results / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = ["| audit | flagged | precision | recall | F1 | AUROC | suggestion acc. | est. noise | fold agreement | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in rows.items():
        q = r.get("model_quality") or {}
        folds = ", ".join(f"{f['agreement_with_given']:.2f}" for f in q.get("per_fold") or [])
        lines.append(f"| {name} | {r['flagged']} | {fmt(r['precision'])} | {fmt(r['recall'])} | {fmt(r['f1'])} | "
                     f"{fmt(r['auroc'])} | {fmt(r['suggestion_accuracy'])} | {fmt(r['estimated_noise_rate'])} | "
                     f"{folds or '–'} | {r['wall_seconds']:.1f} |")
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
