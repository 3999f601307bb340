"""A user's own messy image folder, end to end: train and audit 3,000 images of mixed sizes and formats.

The folder is made from CIFAR-10 (classes 0-4, 600 per class, from ../shared/data): each image is upscaled to a
random size between 24 and 72 px on each side (aspect ratio not kept) and saved as JPEG, PNG, BMP, GIF (palette),
grey PNG or RGBA PNG in turn; 10% are moved to a wrong class folder (file names keep the true class, so the
audit can be scored). Then, as a user would:

    noisyfit train --dataset folder:DIR ...             (the size policy resizes to the median, with a warning)
    noisyfit audit folder:DIR ...                       (the default detector)

    python benchmarks/mixed_folder.py --out benchmarks/results/mixed-folder.json

Records the command lines, their exit codes and wall times, the size rule applied, the run's test accuracy
(on a clean 1,000-image test split made the same way) and the audit's precision / recall against the moves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("jpg", "png", "bmp", "gif", "grey", "rgba")


def make_folder(root: Path, data_dir: Path, per_class: int = 600, test_per_class: int = 200, seed: int = 0) -> dict:
    from PIL import Image

    from noisyfit.data.cifar10_jpeg import load_cifar10_jpeg

    done = root / ".complete"
    if done.is_file():
        return json.loads(done.read_text())
    rng = np.random.default_rng(seed)
    cifar = load_cifar10_jpeg(data_dir)
    classes = cifar.train.class_names[:5]
    moved = 0
    for split, data, n in (("train", cifar.train, per_class), ("test", cifar.test, test_per_class)):
        y = data.true_labels if data.true_labels is not None else data.labels
        for c, name in enumerate(classes):
            rows = np.flatnonzero(y == c)[:n]
            for k, r in enumerate(rows):
                folder = name
                if split == "train" and rng.random() < 0.10:  # a wrong class folder
                    folder = classes[(c + 1 + rng.integers(0, 4)) % 5]
                    moved += 1
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                h, w = (int(v) for v in rng.integers(24, 73, 2))
                im = Image.fromarray(data.x[r]).resize((w, h), Image.Resampling.BICUBIC)
                kind = FORMATS[k % len(FORMATS)]
                stem = root / split / folder / f"true-{name}-{k:04d}"
                if kind == "grey":
                    im.convert("L").save(f"{stem}.png")
                elif kind == "rgba":
                    im.convert("RGBA").save(f"{stem}.png")
                elif kind == "gif":
                    im.convert("P").save(f"{stem}.gif")
                else:
                    im.save(f"{stem}.{kind}")
    info = {"classes": classes, "train": per_class * 5, "test": test_per_class * 5, "moved": moved,
            "formats": list(FORMATS), "sizes": "24-72 px per side"}
    done.write_text(json.dumps(info))
    return info


def run(cmd: list[str]) -> dict:
    t0 = time.time()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return {"command": cmd[2:], "exit_code": res.returncode, "seconds": time.time() - t0,
            "stderr_tail": res.stderr[-1500:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--work", default=str(REPO / "runs" / "mixed-folder"))
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    args = p.parse_args()
    work = Path(args.work)
    root = work / "photos"
    info = make_folder(root, Path(args.data_dir))
    net = ["model.backbone=fastcnn", "model.args.widths=[32,64,128]", "train.epochs=10", "train.batch_size=128",
           "optim.lr=0.05", "train.precision=bf16", "--no-progress"]
    train = run([sys.executable, "-m", "noisyfit.cli", "train", "--dataset", f"folder:{root}", "--out",
                 str(work / "run"), "--overwrite", *net])
    audit = run([sys.executable, "-m", "noisyfit.cli", "audit", f"folder:{root}", "--out", str(work / "audit"),
                 "--overwrite", *net])
    result = {"benchmark": "mixed-folder", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "folder": info,
              "train": train, "audit": audit}
    if train["exit_code"] == 0:
        r = json.loads((work / "run" / "results.json").read_text())
        result["train"].update(test_acc_last=r["final"]["test_acc"], test_acc_selected=r["selected"]["test_acc"],
                               commit=r["commit"], seconds_per_epoch=r["compute"]["seconds_per_epoch_median"])
    if audit["exit_code"] == 0:
        s = json.loads((work / "audit" / "summary.json").read_text())
        import csv

        with open(work / "audit" / "issues.csv", newline="") as f:
            flagged = list(csv.DictReader(f))  # one row per flagged example
        wrong = {f"train/{q.parent.name}/{q.name}" for q in (root / "train").glob("*/*")
                 if q.name.split("-")[1] != q.parent.name}  # file names keep the true class
        hit = sum(1 for row in flagged if row["id"] in wrong)
        result["audit"].update(mode=s["mode"], flagged=len(flagged), moved=len(wrong),
                               precision=hit / max(len(flagged), 1), recall=hit / max(len(wrong), 1),
                               estimated_noise_rate=s.get("estimated_noise_rate"),
                               detector_choice=(s.get("detector_choice") or {}).get("method"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "stderr_tail"} if isinstance(v, dict) else v
                      for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
