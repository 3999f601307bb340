"""benchmarks/STREAMING.md from benchmarks/results/streaming/*.json (written by benchmarks/streaming.py).

    python benchmarks/streaming_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "streaming"


def _f(v, digits=0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def cifar_section(d: dict) -> list[str]:
    lines = ["## Images per second: CIFAR-10 as an image folder, CPU protocol", "",
             "`folder:cifar10-jpeg.tar.gz`, clean labels, CE, fastcnn 64/256/256, batch 512, bf16, one epoch per run; "
             "`data.stream=false` (decoded into memory first) against `data.stream=true` (decoded from disk by "
             f"DataLoader workers while training), alternated over {len(d['rows']) // 2} rounds in one session. "
             "*others* is the share of the machine other processes took during the epoch.", "",
             "| round | path | images/s | epoch (s) | peak RSS (MB) | others |", "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['round']} | {'streamed' if r['stream'] else 'in memory'} | {_f(r['images_per_second'])} | "
                     f"{_f(r['train_seconds'], 1)} | {_f(r['peak_rss_mb'])} | {_f(100 * (r['others_cpu_share'] or 0))}% |")
    m = d["median_images_per_second"]
    lines += ["", f"Median images/s: in memory {_f(m['memory'])}, streamed {_f(m['stream'])}: the streamed path runs at "
              f"**{100 * d['stream_over_memory']:.0f}%** of the in-memory one on this {d['cpu_count']}-core machine, "
              "where the decoding workers share the cores with training.",
              f"Test accuracy after the epoch: {', '.join(sorted({'%.2f%%' % (100 * r['test_acc']) for r in d['rows']}))} "
              "in every run, streamed or not: the same batches, pixels and augmentation draws.", ""]
    return lines


def big_section(d: dict) -> list[str]:
    tree = all(r.get("tree_pss_peak_mb") is not None for r in d["rows"])
    lines = ["## Peak memory: 60,000 JPEGs of 96x96 px" + (", the whole run" if tree else ", the trainer"), "",
             f"CIFAR-10 upscaled to 96x96 px ({d['images']:,} files, {d['decoded_mb']:,.0f} MB once decoded), one epoch "
             "of fastcnn 16/32/32 (stem 8), batch 256, evaluation batch 256. *peak RSS* is the training process's own "
             "(`compute.peak_rss_mb` of its results.json). "
             + ("*whole run* is the peak, sampled every 0.25 s, of the proportional set size (PSS) summed over the "
                "training process and its decoding workers: shared pages are counted once, so this is what the run "
                "takes from the machine; *processes* is the most processes seen at once." if tree else
                "The decoding workers are separate processes, each holding one batch at a time, not measured here."),
             ""]
    head = ["path", "training images", "peak RSS (MB)"] + (["whole run, peak PSS (MB)", "processes"] if tree else []) \
        + ["images/s", "epoch (s)", "others", "code"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = sorted(d["rows"], key=lambda r: (not r["stream"], r["train_images"]))
    for r in rows:
        cells = [("streamed" if r["stream"] else "in memory"), f"{r['train_images']:,}", _f(r["peak_rss_mb"])]
        if tree:
            cells += [_f(r["tree_pss_peak_mb"]), str(r["tree_max_processes"])]
        cells += [_f(r["images_per_second"]), _f(r["train_seconds"], 1), f"{_f(100 * (r['others_cpu_share'] or 0))}%",
                  f"{(r.get('commit') or '?')[:8]}"
                  f"{' (uncommitted changes)' if str(r.get('commit')).endswith('-dirty') else ''}"]
        lines.append("| " + " | ".join(cells) + " |")
    streamed = [r for r in rows if r["stream"]]
    if tree and len(streamed) >= 2:
        a, b = streamed[-2], streamed[-1]
        grow = (b["tree_pss_peak_mb"] - a["tree_pss_peak_mb"]) / (b["train_images"] - a["train_images"]) * 1000
        per_image = d["decoded_mb"] / d["images"] * 1000
        lines += ["", f"From {a['train_images']:,} to {b['train_images']:,} streamed training images the whole run's "
                  f"peak grows by {grow:,.1f} MB per 1,000 images, against {per_image:,.1f} MB per 1,000 images "
                  "of decoded pixels: the streamed run does not hold the data set."]
    lines += ["", "*others*: the share of the machine other processes took during the epoch; where it differs between "
              "rows, their images/s are not a comparison of the two paths (the CIFAR-10 table above is).",
              "*code*: the commit each run recorded; every row ran the same data path. Runs before commit 73bc7ae "
              "computed the normalisation statistics with float64 copies of each chunk (16 bytes per pixel value; "
              "chunks of 5,000 images in memory, 256 streamed: about 2.2 GB and 113 MB here); from 73bc7ae on, "
              "exact histograms of a few MB, with the same statistics (every 50,000-image run, before the fix or after, ends at the same test accuracy)."]
    lines.append("")
    return lines


def main() -> None:
    out = ["# The streamed data path", "",
           "Generated by `python benchmarks/streaming_report.py` from `benchmarks/results/streaming/*.json` "
           "(`python benchmarks/streaming.py --part cifar|big`); never edit by hand. Times are from one session "
           "on one machine: compare them as ratios within a table.", ""]
    # big96.json: the first measurement (trainer RSS only); big96-tree.json: the whole process tree too
    for name, section in (("cifar.json", cifar_section), ("big96.json", big_section),
                          ("big96-tree.json", big_section)):
        f = RESULTS / name
        if f.is_file():
            d = json.loads(f.read_text())
            out += section(d) + [f"Source: `{f.relative_to(HERE.parent)}` (commit {d['commit'][:8]}, {d['created']}).", ""]
    (HERE / "STREAMING.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'STREAMING.md'}")


if __name__ == "__main__":
    main()
