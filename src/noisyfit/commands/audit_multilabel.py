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
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV with a 'labels' column.") from err
    header = [h.strip() for h in table[0]] if table else []
    # a blank line is an example without classes when 'labels' is the only column (that is how such a row is
    # written); with more columns it is a stray line, skipped as the single-label loader does
    body = [r if r else [""] for r in table[1:]] if header == ["labels"] else [r for r in table[1:] if r]
    rows = [dict(zip(header, r)) for r in body]
    if "labels" not in header:
        cols = ", ".join(header) if header else "none"
        raise DataError(f"{path}: no 'labels' column (columns: {cols}); each row needs its classes separated by "
                        f"'{SEPARATOR}', e.g. cat{SEPARATOR}dog, or an empty cell for none.")

    def sets(column: str) -> list[list[str]]:
        return [[c.strip() for c in (r.get(column) or "").split(SEPARATOR) if c.strip()] for r in rows]

    if not rows:
        raise DataError(f"{path}: no data rows under the header.")
    ids = [(r.get("id") or "").strip() for r in rows] if "id" in header else None
    return sets("labels"), ids, sets("true_labels") if "true_labels" in header else None


def encode_sets(path: Path, sets: list[list[str]], true_sets: list[list[str]] | None, num_columns: int,
                log) -> tuple[list[list[int]], list[list[int]] | None, list[str]]:
    """Class names -> column indices, with the one rule of single-label files (``noisyfit.data.labels``): the
    classes of ``<name>.classes.txt`` in its order when it exists (a name outside it is an error naming its line),
    else the names sorted, numbers numerically (said, since the probability columns must follow that order)."""
    from noisyfit.data.labels import encode_labels
    from noisyfit.data.tabular import classes_file, declared_classes

    columns = {"labels": sets, **({"true_labels": true_sets} if true_sets is not None else {})}
    flat = {col: [c for s in ss for c in s] for col, ss in columns.items()}
    lines = {col: [k + 2 for k, s in enumerate(ss) for _ in s] for col, ss in columns.items()}  # + header, 1-based

    def row(col: str, i: int) -> str:
        return f"line {lines[col][i]}" + (f" in column {col!r}" if col != "labels" else "")

    declared = declared_classes(path)
    codes, names = encode_labels(flat, declared=declared, where=str(path), row=row,
                                 declared_in=str(classes_file(path)))
    if len(names) != num_columns:
        where = f"{classes_file(path)} lists" if declared is not None else "the labels use"
        raise DataError(f"{where} {len(names)} classes ({', '.join(names[:8])}{'...' if len(names) > 8 else ''}) but "
                        f"the probabilities have {num_columns} columns; one column per class, in the order of "
                        f"{classes_file(path)}.")
    if declared is None:
        log(f"note: the probability columns are taken as the classes in sorted order ({', '.join(names[:8])}"
            f"{'...' if len(names) > 8 else ''}); declare the order in {classes_file(path)} if it is another")

    def regroup(col: str) -> list[list[int]]:
        it = iter(codes[col].tolist())
        return [[next(it) for _ in s] for s in columns[col]]

    return regroup("labels"), regroup("true_labels") if true_sets is not None else None, list(names)


#: audit options that do not apply to a multi-label audit of given probabilities (refused, not ignored)
NOT_WITH_MULTILABEL = {"noise": None, "noisy_labels": None, "clean": None, "clean_threshold": None,
                       "detector": "noisyfit", "rank_by": "self_confidence", "argmax_over": "confident",
                       "frac_noise": 1.0, "chunk_size": None, "label_column": None, "method": None, "run": None,
                       "oof": False, "annotators": None, "embedder": None, "data": None}


def check_multilabel_args(args) -> None:
    """Refuse what --multi-label would silently ignore (it had exited 0 with --clean or --noise unapplied)."""
    given = [k for k, default in NOT_WITH_MULTILABEL.items() if getattr(args, k, default) not in (default, [])]
    if args.overrides:
        given.append("key=value overrides")
    if given:
        flags = ", ".join("DATA" if k == "data" else k if " " in k else "--" + k.replace("_", "-") for k in given)
        raise DataError(f"--multi-label audits the classes of LABELS.csv against --pred-probs by one-vs-rest "
                        f"confident learning; it does not take {flags}. Drop them (--filter-by and "
                        "--min-examples-per-class apply).")


def _report(found, title: str) -> str:
    e = html.escape
    auc = found.info["model_quality"]["class_auroc"]

    def cell(v) -> str:
        return "–" if v is None else f"{v:.3f}"

    classes = "".join(f"<tr><td class='l'>{e(c['name'])}</td><td>{c['examples']}</td><td>{c['remove']}</td>"
                      f"<td>{c['add']}</td><td>{cell(auc.get(c['name']))}</td><td class='l'>{e(c.get('note', ''))}"
                      "</td></tr>" for c in found.per_class)
    cautions = "".join(f"<li>{e(m)}</li>" for m in found.info["model_quality"]["warnings"])
    rows = "".join(f"<tr><td>{r['index']}</td><td class='l'>{e(r['id'])}</td><td class='l'>{e(r['given_labels'])}"
                   f"</td><td class='l'>{e(r['suggested_labels'])}</td><td>{r['score']:.3f}</td>"
                   f"<td class='l'>{e(r['reason'])}</td></tr>" for r in found.records(500))
    more = f" The first 500 of {found.num_issues:,} are shown; issues.csv lists all." if found.num_issues > 500 else ""
    from noisyfit.report.html import _CSS  # one look for every report of the audit

    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + e(title) + "</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{e(title)}</h1><p>{e(found.info['detector'])}: "
            f"{e(found.info['rule'])}. {found.num_issues:,} of {len(found):,} examples flagged "
            f"({int(found.entry_flags.sum()):,} entries).</p></header><main>"
            + (f"<section id='cautions'><h2>Before you act on these flags</h2><ul>{cautions}</ul></section>"
               if cautions else "")
            + "<section><h2>Per class</h2><table><tr><th class='l'>class</th><th>examples</th><th>to remove</th>"
            f"<th>to add</th><th>AUROC of its column</th><th class='l'>note</th></tr>{classes}</table></section>"
            f"<section><h2>Flagged examples</h2><p class='note'>Lowest score first.{more}</p><table id='flagged'>"
            "<tr><th>index</th><th class='l'>id</th><th class='l'>given</th><th class='l'>suggested</th><th>score</th>"
            f"<th class='l'>reason</th></tr>{rows}</table></section></main></body></html>")


def audit_multilabel(args, out: Path, log) -> int:
    from noisyfit import __version__
    from noisyfit.detect.multilabel import multilabel_issues, sets_to_matrix
    from noisyfit.detect.validation import load_pred_probs

    t0 = time.time()
    if not args.pred_probs:
        raise DataError("--multi-label audits given probabilities: add --pred-probs P.npy ([N, K], one "
                        "out-of-sample probability per class, e.g. sigmoid outputs of a cross-validated model).")
    path = Path(args.multi_label)
    sets, ids, true_sets = read_label_sets(path)
    probs = np.asarray(load_pred_probs(args.pred_probs), dtype=np.float64)
    if probs.ndim == 3 and probs.shape[2] == 2 and probs.shape[1] == len(sets):
        raise DataError(f"{args.pred_probs}: shape {list(probs.shape)}, one [N, 2] array per class as scikit-learn's "
                        "MultiOutputClassifier.predict_proba returns; save the probability of each class being "
                        "present: np.save(path, np.stack([p[:, 1] for p in probs], axis=1)).")
    if probs.ndim != 2 or len(probs) != len(sets):
        raise DataError(f"{args.pred_probs}: shape {list(probs.shape)}, but {path} has {len(sets)} examples; one "
                        "row per example, in the file's order, one column per class.")
    given, truth, names = encode_sets(path, sets, true_sets, probs.shape[1], log)
    # matrices: two-class index lists such as [0, 1] would be ambiguous to multilabel_issues
    matrix = sets_to_matrix(given, len(names))
    true_matrix = sets_to_matrix(truth, len(names)) if truth is not None else None
    found = multilabel_issues(matrix, probs, class_names=names, ids=ids, true_labels=true_matrix,
                              filter_by=args.filter_by, min_examples_per_class=args.min_examples_per_class,
                              check_quality=False)
    for message in found.info["model_quality"]["warnings"]:
        log(f"warning: {message}")
    found.write_csv(out / "issues.csv")
    summary = {"schema": "noisyfit.audit/1", "noisyfit_version": __version__, "command": ["noisyfit", *sys.argv[1:]],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": str(path), "mode": "multi-label",
               **found.summary(), "seconds": time.time() - t0,
               "files": {"issues": "issues.csv", "report": "report.html"}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.html").write_text(_report(found, f"Multi-label audit: {path.name}"), encoding="utf-8")
    det = found.detection_metrics()
    wrong = int((found.given != found.true_labels).sum()) if found.true_labels is not None else 0
    scored = (f"; entries: precision {det['entries']['precision']:.3f}, recall {det['entries']['recall']:.3f} "
              f"of {wrong:,} wrong" if det and wrong else "")
    log(f"{found.num_issues:,} of {len(found):,} examples flagged ({int(found.entry_flags.sum()):,} entries){scored}")
    print(f"written: {out / 'issues.csv'}, {out / 'summary.json'}, {out / 'report.html'}")
    return 0
