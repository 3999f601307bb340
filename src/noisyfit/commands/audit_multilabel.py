"""``noisyfit audit --multi-label LABELS.csv --pred-probs P.npy``: the multi-label audit from files.

``LABELS.csv`` has a ``labels`` column with each example's classes separated by ``|`` (an empty cell: none),
optionally ``id`` and ``true_labels`` (the same form, for detection metrics). The columns of ``P.npy`` are the
classes in the order of ``LABELS.classes.txt`` (one name per line) when it exists, else of the class names
sorted (said on the console, since a wrong order silently ruins the audit). Writes ``issues.csv`` (one row per
flagged example: the given and suggested sets, the classes to remove and add, score, reason), ``summary.json``
and a small ``report.html``.
"""

from __future__ import annotations

import csv
import html
import json
import sys
import time
from pathlib import Path

import numpy as np

from noisyfit.data.labeled import DataError

SEPARATOR = "|"


def read_label_sets(path: Path) -> tuple[list[list[str]], list[str] | None, list[list[str]] | None]:
    """``(label sets, ids, true label sets)`` of a multi-label CSV (class names as text)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV with a 'labels' column.") from err
    if not rows or "labels" not in rows[0]:
        cols = ", ".join(rows[0]) if rows else "none"
        raise DataError(f"{path}: no 'labels' column (columns: {cols}); each row needs its classes separated by "
                        f"'{SEPARATOR}', e.g. cat{SEPARATOR}dog, or an empty cell for none.")

    def sets(column: str) -> list[list[str]]:
        return [[c.strip() for c in (r[column] or "").split(SEPARATOR) if c.strip()] for r in rows]

    ids = [r["id"].strip() for r in rows] if "id" in rows[0] else None
    return sets("labels"), ids, sets("true_labels") if "true_labels" in rows[0] else None


def class_order(path: Path, sets: list[list[str]], num_columns: int, log) -> list[str]:
    """The classes of the probability columns: the declared list, else the sorted names (with a note)."""
    from noisyfit.data.tabular import classes_file, declared_classes

    declared = declared_classes(path)
    seen = sorted({c for s in sets for c in s})
    if declared is None:
        if len(seen) != num_columns:
            raise DataError(f"{path}: {len(seen)} classes appear in the labels but the probabilities have "
                            f"{num_columns} columns; list the classes in column order in {classes_file(path)}.")
        log(f"note: the probability columns are taken as the classes in sorted order ({', '.join(seen[:8])}"
            f"{'...' if len(seen) > 8 else ''}); declare the order in {classes_file(path)} if it is another")
        return seen
    unknown = sorted(set(seen) - set(declared))
    if unknown:
        raise DataError(f"{path}: class(es) {unknown[:5]} are not in {classes_file(path)}.")
    if len(declared) != num_columns:
        raise DataError(f"{classes_file(path)} lists {len(declared)} classes but the probabilities have "
                        f"{num_columns} columns.")
    return declared


def _report(found, title: str) -> str:
    e = html.escape
    classes = "".join(f"<tr><td class='l'>{e(c['name'])}</td><td>{c['examples']}</td><td>{c['remove']}</td>"
                      f"<td>{c['add']}</td></tr>" for c in found.per_class)
    rows = "".join(f"<tr><td>{r['index']}</td><td class='l'>{e(r['id'])}</td><td class='l'>{e(r['given_labels'])}"
                   f"</td><td class='l'>{e(r['suggested_labels'])}</td><td>{r['score']:.3f}</td>"
                   f"<td class='l'>{e(r['reason'])}</td></tr>" for r in found.records(500))
    more = f" The first 500 of {found.num_issues:,} are shown; issues.csv lists all." if found.num_issues > 500 else ""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + e(title) + "</title><style>"
            "body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse}td,th{padding:3px 8px;"
            "border-bottom:1px solid #ddd;text-align:right}.l{text-align:left}</style></head><body>"
            f"<h1>{e(title)}</h1><p>{e(found.info['detector'])}: {e(found.info['rule'])}. {found.num_issues:,} of "
            f"{len(found):,} examples flagged ({int(found.entry_flags.sum()):,} entries).</p>"
            "<h2>Per class</h2><table><tr><th class='l'>class</th><th>examples</th><th>to remove</th><th>to add</th>"
            f"</tr>{classes}</table><h2>Flagged examples</h2><p>Lowest score first.{more}</p><table id='flagged'>"
            "<tr><th>index</th><th class='l'>id</th><th class='l'>given</th><th class='l'>suggested</th><th>score</th>"
            f"<th class='l'>reason</th></tr>{rows}</table></body></html>")


def audit_multilabel(args, out: Path, log) -> int:
    from noisyfit import __version__
    from noisyfit.detect.multilabel import multilabel_issues
    from noisyfit.detect.validation import load_pred_probs

    t0 = time.time()
    if not args.pred_probs:
        raise DataError("--multi-label audits given probabilities: add --pred-probs P.npy ([N, K], one "
                        "out-of-sample probability per class, e.g. sigmoid outputs of a cross-validated model).")
    path = Path(args.multi_label)
    sets, ids, true_sets = read_label_sets(path)
    probs = np.asarray(load_pred_probs(args.pred_probs), dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(sets):
        raise DataError(f"{args.pred_probs}: shape {list(probs.shape)}, but {path} has {len(sets)} examples; one "
                        "row per example, in the file's order, one column per class.")
    names = class_order(path, sets + (true_sets or []), probs.shape[1], log)
    index = {c: k for k, c in enumerate(names)}
    found = multilabel_issues([[index[c] for c in s] for s in sets], probs, class_names=names, ids=ids,
                              true_labels=[[index[c] for c in s] for s in true_sets] if true_sets else None,
                              filter_by=args.filter_by, min_examples_per_class=args.min_examples_per_class)
    found.write_csv(out / "issues.csv")
    summary = {"schema": "noisyfit.audit/1", "noisyfit_version": __version__, "command": ["noisyfit", *sys.argv[1:]],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": str(path), "mode": "multi-label",
               **found.summary(), "seconds": time.time() - t0,
               "files": {"issues": "issues.csv", "report": "report.html"}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.html").write_text(_report(found, f"Multi-label audit: {path.name}"), encoding="utf-8")
    det = found.detection_metrics()
    scored = (f"; entries: precision {det['entries']['precision']:.3f}, recall {det['entries']['recall']:.3f}"
              if det else "")
    log(f"{found.num_issues:,} of {len(found):,} examples flagged ({int(found.entry_flags.sum()):,} entries){scored}")
    print(f"written: {out / 'issues.csv'}, {out / 'summary.json'}, {out / 'report.html'}")
    return 0
