"""``noisyfit audit --multi-label LABELS.csv``: the multi-label audit of a CSV of label sets.

``LABELS.csv`` has a ``labels`` column with each example's classes separated by ``|`` (an empty cell: none),
optionally ``id`` and ``true_labels`` (the same form, for detection metrics). The probabilities come from one of:

* ``--pred-probs P.npy``: the user's own out-of-sample probabilities, one column per class;
* ``--embedder E.npz`` (or ``.npy``): features or embeddings, e.g. ``noisyfit embed photos/ --model m.onnx --out
  E.npz``; rows are matched to LABELS.csv by ``id`` when both have ids, else taken in order;
* neither: the CSV's other columns (every column but ``id``, ``labels`` and ``true_labels``) as numeric features.

With features, cross-fitted classifiers give the out-of-fold probabilities
(:func:`noisyfit.detect.cross_fit_multilabel`: ``--folds``, ``--classifier``, ``--logreg-c``, ``--seed``), written to
``pred_probs.npz``. The probability columns are the classes in the order of ``LABELS.classes.txt`` (one name per
line) when it exists, else of the class names sorted (said on the console, since a wrong order silently ruins the
audit). Writes ``issues.csv`` (one row per flagged example: the given and suggested sets, the classes to remove and
add, score, reason), ``summary.json`` and a small ``report.html``.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
import json
import sys
import time
from pathlib import Path

import numpy as np

from noisyfit.data.labeled import DataError

SEPARATOR = "|"


#: columns of LABELS.csv that are not features
LABEL_TABLE_COLUMNS = ("id", "labels", "true_labels")
#: each row's line in the file (for messages), kept under a key no CSV header can produce
LINE_KEY = ("line",)


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    """The header and the rows (as dicts) of a multi-label CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV with a 'labels' column.") from err
    header = [h.strip() for h in table[0]] if table else []
    # a blank line is an example without classes when 'labels' is the only column (that is how such a row is
    # written); with more columns it is a stray line, skipped as the single-label loader does
    body = ([(k + 2, r if r else [""]) for k, r in enumerate(table[1:])] if header == ["labels"]
            else [(k + 2, r) for k, r in enumerate(table[1:]) if r])
    rows = [{**dict(zip(header, r)), LINE_KEY: line} for line, r in body]
    return header, rows


def read_label_sets(path: Path) -> tuple[list[list[str]], list[str] | None, list[list[str]] | None]:
    """``(label sets, ids, true label sets)`` of a multi-label CSV (class names as text)."""
    header, rows = _read_table(path)
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


def read_feature_columns(path: Path) -> tuple[list[str], np.ndarray | None]:
    """The numeric feature columns of a multi-label CSV (every column but id, labels, true_labels): names and
    ``[N, D]`` values, or ``([], None)`` when it has none. A value that is not a number is an error naming its line."""
    header, rows = _read_table(path)
    names = [h for h in header if h not in LABEL_TABLE_COLUMNS]
    if not names:
        return [], None
    x = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, col in enumerate(names):
            text = (r.get(col) or "").strip()
            try:
                x[i, j] = float(text)
            except ValueError:
                raise DataError(f"{path}, line {r[LINE_KEY]}, column {col!r}: {text!r} is not a number; every column but "
                                f"{', '.join(LABEL_TABLE_COLUMNS)} is read as a numeric feature (drop the column, or "
                                "give --pred-probs / --embedder).") from None
    if not np.isfinite(x).all():
        i, j = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}, line {rows[i][LINE_KEY]}, column {names[j]!r}: {x[i, j]}; fill or drop missing values "
                        "first.")
    return names, x


def read_embeddings_for(path: Path, ids: list[str] | None, n: int, labels_path: Path) -> tuple[np.ndarray, str]:
    """Rows of an embeddings/features file (``.npz`` with ``x`` and optional ``ids``, or an ``.npy`` [N, D]) in the
    order of LABELS.csv: matched by id when both have ids (exact, else by file name), else taken in order.
    Returns ``(x, how the rows were matched)``."""
    if not path.is_file():
        raise DataError(f"--embedder {path}: no such file; with --multi-label it takes the features or embeddings of the "
                        "examples (.npz with x and ids, e.g. `noisyfit embed photos/ --model m.onnx --out emb.npz`, "
                        "or an .npy [N, D]).")
    try:
        if path.suffix.lower() == ".npy":
            x, their_ids = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z.files:
                    raise DataError(f"--embedder {path}: no 'x' array (found {sorted(z.files)}).")
                x = z["x"]
                their_ids = [str(i) for i in z["ids"]] if "ids" in z.files else None
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"--embedder {path}: cannot read it ({err}).") from err
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"--embedder {path}: shape {list(x.shape)}; features are [N, D] rows.")
    if ids is None or their_ids is None:
        if len(x) != n:
            raise DataError(f"--embedder {path}: {len(x):,} rows, but {labels_path} has {n:,} examples; row i must "
                            "describe example i (or give both files the same ids to match them).")
        return x, "in order" + (f" ({labels_path.name} has no id column)" if their_ids is not None else "")
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise DataError(f"{labels_path}: id {dup!r} appears more than once; ids name one example each.")
    tried = []
    for how, key in (("by id", lambda s: s), ("by file name", lambda s: Path(s).name)):
        keys = [key(i) for i in their_ids]
        counts = Counter(keys)
        where = {k: i for i, k in enumerate(keys)}
        missing = [i for i in ids if key(i) not in where]
        twice = [i for i in ids if counts.get(key(i), 0) > 1]
        if not missing and not twice:
            return x[[where[key(i)] for i in ids]], how
        tried.append((how, missing, twice))
    how, missing, twice = min(tried, key=lambda t: len(t[1]) + len(t[2]))  # the closer match explains best
    if twice:
        raise DataError(f"--embedder {path}: more than one row matches id {twice[0]!r} of {labels_path} ({how}); "
                        "each example must be embedded once.")
    raise DataError(f"--embedder {path}: no row matches id {missing[0]!r} of {labels_path} ({how}; "
                    f"{len(missing):,} of {n:,} ids unmatched; its ids look like {their_ids[0]!r}); embed the same "
                    "examples, or give both files the same ids.")


def encode_sets(path: Path, sets: list[list[str]], true_sets: list[list[str]] | None, num_columns: int | None,
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
    if declared is None and not flat["labels"]:
        raise DataError(f"{path}: no row has a class; a multi-label audit needs label sets, e.g. cat{SEPARATOR}dog.")
    codes, names = encode_labels(flat, declared=declared, where=str(path), row=row,
                                 declared_in=str(classes_file(path)), min_classes=1)
    if num_columns is not None and len(names) != num_columns:
        where = f"{classes_file(path)} lists" if declared is not None else "the labels use"
        raise DataError(f"{where} {len(names)} classes ({', '.join(names[:8])}{'...' if len(names) > 8 else ''}) but "
                        f"the probabilities have {num_columns} columns; one column per class, in the order of "
                        f"{classes_file(path)}.")
    if declared is None and num_columns is not None:
        log(f"note: the probability columns are taken as the classes in sorted order ({', '.join(names[:8])}"
            f"{'...' if len(names) > 8 else ''}); declare the order in {classes_file(path)} if it is another")

    def regroup(col: str) -> list[list[int]]:
        it = iter(codes[col].tolist())
        return [[next(it) for _ in s] for s in columns[col]]

    return regroup("labels"), regroup("true_labels") if true_sets is not None else None, list(names)


#: audit options that do not apply to a multi-label audit (refused, not ignored)
NOT_WITH_MULTILABEL = {"noise": None, "noisy_labels": None, "clean": None, "clean_threshold": None,
                       "detector": "noisyfit", "rank_by": "self_confidence", "argmax_over": "confident",
                       "frac_noise": 1.0, "chunk_size": None, "label_column": None, "method": None, "run": None,
                       "oof": False, "annotators": None, "data": None, "oof_method": None, "config": None,
                       "backbone": None, "epochs": None, "batch_size": None, "lr": None}
#: the cross-fit's options: they apply when the audit fits classifiers, not to given --pred-probs
CROSS_FIT_OPTIONS = {"folds": None, "classifier": "logreg", "logreg_c": "auto", "seed": None, "knn_k": None}


def _flags(keys: list[str]) -> str:
    return ", ".join("DATA" if k == "data" else k if " " in k else "--" + k.replace("_", "-") for k in keys)


def check_multilabel_args(args) -> None:
    """Refuse what --multi-label would silently ignore (it had exited 0 with --clean or --noise unapplied)."""
    given = [k for k, default in NOT_WITH_MULTILABEL.items() if getattr(args, k, default) not in (default, [])]
    if args.overrides:
        given.append("key=value overrides")
    if given:
        raise DataError(f"--multi-label audits the classes of LABELS.csv by one-vs-rest confident learning; it does not "
                        f"take {_flags(given)}. Drop them (--pred-probs or --embedder, --folds, --classifier, "
                        "--logreg-c, --seed, --filter-by and --min-examples-per-class apply).")
    if args.pred_probs:
        fit = [k for k, default in CROSS_FIT_OPTIONS.items() if getattr(args, k, default) != default]
        if args.embedder:
            fit.insert(0, "embedder")
        if fit:
            raise DataError(f"--pred-probs gives the probabilities, so nothing is fitted: {_flags(fit)} would be "
                            "ignored. Drop them, or drop --pred-probs to cross-fit classifiers on features.")
    if (args.folds or 5) < 2:
        raise DataError(f"--folds {args.folds}: at least 2")
    if args.knn_k is not None and args.knn_k < 1:
        raise DataError(f"--knn-k {args.knn_k}: at least 1")
    unused = {"knn": [("folds", args.folds), ("logreg-c", args.logreg_c != "auto" or None), ("seed", args.seed)],
              "mlp": [("logreg-c", args.logreg_c != "auto" or None), ("knn-k", args.knn_k)],
              "logreg": [("knn-k", args.knn_k)]}.get(args.classifier, [])
    unused = [f"--{o}" for o, v in unused if v is not None]
    if unused and not args.pred_probs:
        raise DataError(f"--classifier {args.classifier} does not use {', '.join(unused)}"
                        + (" (no fitting, no folds: each example's neighbours vote, never itself)"
                           if args.classifier == "knn" else "") + "; drop it.")


def _source_line(extra: dict) -> str:
    """Where the probabilities came from, in one sentence."""
    src, cf = extra.get("source", {}), extra.get("cross_fit")
    if cf is None:
        return f"Probabilities: given ({src.get('pred_probs', '--pred-probs')})."
    where = (f"the embeddings of {src['embedder']} (rows matched {src['rows_matched']})" if "embedder" in src
             else f"the CSV's {len(src.get('feature_columns', []))} feature columns")
    if cf["classifier"] == "knn":
        return (f"Probabilities: the share of each example's {cf['params']['k']} nearest neighbours ({cf['params']['metric']},"
                f" never itself) that have each class, on {where}; saved in pred_probs.npz.")
    return (f"Probabilities: out of fold, from {cf['classifier']} classifiers cross-fitted on {where}, {cf['folds']} "
            f"folds ({cf['stratification']} stratification), seed {cf['seed']}; saved in pred_probs.npz.")


def _report(found, title: str, extra: dict | None = None) -> str:
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
    source = _source_line(extra or {})
    from noisyfit.report.html import _CSS  # one look for every report of the audit

    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + e(title) + "</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{e(title)}</h1><p>{e(found.info['detector'])}: "
            f"{e(found.info['rule'])}. {found.num_issues:,} of {len(found):,} examples flagged "
            f"({int(found.entry_flags.sum()):,} entries).</p><p>{e(source)}</p></header><main>"
            + (f"<section id='cautions'><h2>Before you act on these flags</h2><ul>{cautions}</ul></section>"
               if cautions else "")
            + "<section><h2>Per class</h2><table><tr><th class='l'>class</th><th>examples</th><th>to remove</th>"
            f"<th>to add</th><th>AUROC of its column</th><th class='l'>note</th></tr>{classes}</table></section>"
            f"<section><h2>Flagged examples</h2><p class='note'>Lowest score first.{more}</p><table id='flagged'>"
            "<tr><th>index</th><th class='l'>id</th><th class='l'>given</th><th class='l'>suggested</th><th>score</th>"
            f"<th class='l'>reason</th></tr>{rows}</table></section></main></body></html>")


def _probabilities(args, path: Path, ids, n: int, given: np.ndarray, truth, names: list[str], out: Path, log):
    """``(pred_probs, skipped classes, summary extra)``: the given --pred-probs, or cross-fitted on features."""
    from noisyfit.detect.crossfit import KNN_K
    from noisyfit.detect.multilabel_crossfit import cross_fit_multilabel
    from noisyfit.detect.validation import load_pred_probs

    if args.pred_probs:
        probs = np.asarray(load_pred_probs(args.pred_probs), dtype=np.float64)
        # a whole column of NaN is a class without probabilities (pred_probs.npz of an audit that could not fit
        # it): not audited, and said; NaN among numbers is an error (multilabel_issues)
        empty = {c: "no probabilities in --pred-probs (a column of NaN)" for c in range(probs.shape[1])
                 if np.isnan(probs[:, c]).all()}
        for c, why in empty.items():
            log(f"note: class {names[c]!r} is not audited: {why}")
        return probs, empty, {"source": {"pred_probs": str(args.pred_probs)}}
    if args.embedder:
        x, matched = read_embeddings_for(Path(args.embedder).expanduser(), ids, n, path)
        source = {"embedder": str(args.embedder), "rows_matched": matched}
    else:
        columns, x = read_feature_columns(path)
        if x is None:
            raise DataError(f"{path} has no feature columns and no probabilities were given: add --pred-probs P.npy "
                            "(out-of-sample probabilities, one column per class), --embedder E.npz (features or "
                            "embeddings of the examples), or numeric feature columns to the CSV.")
        source = {"feature_columns": columns}
    folds = args.folds or 5
    seed = args.seed if args.seed is not None else 0
    k = args.knn_k if args.knn_k is not None else KNN_K
    how = f"{k} nearest neighbours" if args.classifier == "knn" else f"{folds} folds"
    log(f"{'knn shares' if args.classifier == 'knn' else 'cross-fitting ' + args.classifier} on {x.shape[1]}-d "
        f"features of {n:,} examples, {how} "
        f"({'from ' + str(args.embedder) + ', rows matched ' + matched if args.embedder else 'the CSV columns'})")
    cf = cross_fit_multilabel(x, given, folds=folds, classifier=args.classifier, seed=seed, C=args.logreg_c,
                              true_labels=truth, k=k, log=log)
    for c, why in cf.info["skipped"].items():
        log(f"note: class {names[c]!r} is not audited: {why}")
    if len(cf.info["skipped"]) == given.shape[1]:
        raise DataError(f"no class of {path} can be audited ({'; '.join(f'{names[c]}: {w}' for c, w in cf.info['skipped'].items())}"
                        f"); {'use fewer --folds, or ' if args.classifier != 'knn' else ''}label more examples.")
    np.savez(out / "pred_probs.npz", pred_probs=cf.pred_probs, fold=cf.fold,
             ids=np.array(ids if ids is not None else [str(i) for i in range(n)], dtype=str))
    return cf.pred_probs, cf.info["skipped"], {"source": source,
                                               "cross_fit": {**cf.info, "seconds": cf.seconds,
                                                             "pred_probs": "pred_probs.npz"}}


def audit_multilabel(args, out: Path, log) -> int:
    from noisyfit import __version__
    from noisyfit.detect.multilabel import multilabel_issues, sets_to_matrix

    t0 = time.time()
    path = Path(args.multi_label)
    sets, ids, true_sets = read_label_sets(path)
    n = len(sets)
    if args.pred_probs:
        from noisyfit.detect.validation import load_pred_probs

        shape = np.shape(load_pred_probs(args.pred_probs))
        if len(shape) == 3 and shape[2] == 2 and shape[1] == n:
            raise DataError(f"{args.pred_probs}: shape {list(shape)}, one [N, 2] array per class as scikit-learn's "
                            "MultiOutputClassifier.predict_proba returns; save the probability of each class being "
                            "present: np.save(path, np.stack([p[:, 1] for p in probs], axis=1)).")
        if len(shape) != 2 or shape[0] != n:
            raise DataError(f"{args.pred_probs}: shape {list(shape)}, but {path} has {n} examples; one "
                            "row per example, in the file's order, one column per class.")
        num_columns = shape[1]
    else:
        num_columns = None  # the classes the labels use (or LABELS.classes.txt)
    given, truth, names = encode_sets(path, sets, true_sets, num_columns, log)
    # matrices: two-class index lists such as [0, 1] would be ambiguous to multilabel_issues
    matrix = sets_to_matrix(given, len(names))
    true_matrix = sets_to_matrix(truth, len(names)) if truth is not None else None
    probs, skipped, extra = _probabilities(args, path, ids, n, matrix, true_matrix, names, out, log)
    found = multilabel_issues(matrix, probs, class_names=names, ids=ids, true_labels=true_matrix,
                              filter_by=args.filter_by, min_examples_per_class=args.min_examples_per_class,
                              skip=skipped, check_quality=False)
    for message in found.info["model_quality"]["warnings"]:
        log(f"warning: {message}")
    found.write_csv(out / "issues.csv")
    files = {"issues": "issues.csv", "report": "report.html"}
    if "cross_fit" in extra:
        files["pred_probs"] = "pred_probs.npz"
    summary = {"schema": "noisyfit.audit/1", "noisyfit_version": __version__, "command": ["noisyfit", *sys.argv[1:]],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": str(path), "mode": "multi-label",
               **extra, **found.summary(), "seconds": time.time() - t0, "files": files}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.html").write_text(_report(found, f"Multi-label audit: {path.name}", extra), encoding="utf-8")
    det = found.detection_metrics()
    wrong = int((found.given != found.true_labels).sum()) if found.true_labels is not None else 0
    scored = (f"; entries: precision {det['entries']['precision']:.3f}, recall {det['entries']['recall']:.3f} "
              f"of {wrong:,} wrong" if det and wrong else "")
    log(f"{found.num_issues:,} of {len(found):,} examples flagged ({int(found.entry_flags.sum()):,} entries){scored}")
    print(f"written: {', '.join(str(out / f) for f in files.values())}, {out / 'summary.json'}")
    return 0
