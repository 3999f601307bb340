"""`noisyfit audit`: find the wrong labels in a data set, explain them, and write a report.

Sources of evidence (one at a time):

* ``--pred-probs FILE``  your model's out-of-sample probabilities (``.npy``, memory-mapped; rows = the
  training examples of DATA in order);
* ``--method M``         train noisyfit method M (flags as for ``noisyfit train``) and use its own
  per-sample signal (all examples audited: no validation split unless you set ``data.val_fraction``);
* ``--run RUN_DIR``      an existing ``noisyfit train --out`` folder;
* ``--annotators A,B``   several label columns (e.g. CIFAR-10N ``random1,random2,random3``): the given
  labels are audited against their consensus;
* ``--oof`` (or ``--folds`` / ``--oof-method``): out-of-fold probabilities from K-fold training (``--folds``,
  default 5; ``--epochs``; CE by default), saved as OUT/pred_probs.npy, then confident learning. Each finished
  fold is kept in OUT/folds/, so a killed audit re-run with ``--resume`` trains only the folds it had not
  finished;
* ``--multi-label FILE``: several classes per example, audited one class at a time against ``--pred-probs`` or
  against classifiers cross-fitted on features (``--embedder`` or the CSV's own columns);
* none of these:         the default detector, :data:`DEFAULT_METHOD` trained once on everything and its own
  flags (see :data:`DEFAULT_WHY`: the evidence for the choice, recorded in summary.json).

Writes OUT/issues.csv, OUT/summary.json, OUT/report.html (with --annotators also OUT/review.csv: items
whose label was kept although at most half of their annotators gave it) and OUT/cleaned_labels.npz (the flagged
examples relabelled or dropped, ``--clean``; `noisyfit train --noisy-labels` reads it). OUT must be new
or empty unless ``--resume`` (continue: finished folds, the --method run) or ``--overwrite`` (delete the
audit's files first) is given.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from noisyfit.commands.override_args import OVERRIDE as _OVERRIDE
from noisyfit.commands.override_args import accept_overrides_anywhere

#: the detector an audit runs when no source is named, chosen from the bench's evidence, not assumed
DEFAULT_METHOD = "elr"
DEFAULT_WHY = ("no detector was named, so the audit trained ELR once on every example and flagged the ones whose "
               "given label its final model gives p < 0.5. Of the detectors measured on CIFAR-10N worst "
               "(benchmarks/AUDIT.md: every method's own flags, confident learning on in-sample and on 5-fold "
               "out-of-fold CE probabilities, cleanlab), one ELR run had the best F1 at the lowest training cost, "
               "about a fifth of 5-fold out-of-fold CE + confident learning (--oof), which it also beat. That "
               "evidence is from one image data set; on three feature tables with planted noise "
               "(benchmarks/AUDIT_TABULAR.md, 3 seeds) ELR's flags had the best mean F1 in 4 of 6 table x noise "
               "cells, ahead of --oof and CE's own flags everywhere; classifiers on the table's own features "
               "(--embedder with the features as embeddings) led the other two by about a point: the votes of 10 "
               "nearest neighbours on digits with symmetric noise, a cross-fitted logistic regression on breast "
               "cancer with pair flips. On other data, compare with --oof, --method or --embedder.")


def register(sub) -> None:
    p = sub.add_parser("audit", help="find likely label errors: issues.csv, summary.json, report.html",
                       description=__doc__.split("\n\n")[0] + " Sources: --pred-probs, --method, --run, "
                       f"--annotators, --embedder, --oof (out-of-fold training), or none: one {DEFAULT_METHOD} run "
                       "(the default detector).")
    p.add_argument("items", nargs="*", metavar="DATA [key=value ...]",
                   help="DATA: cifar10n-worst, cifar10, digits, folder:PATH, csv:PATH, npz:PATH (optional with --run: "
                        "taken from the run's config); then key=value config overrides (train.epochs=5 ...)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pred-probs", metavar="FILE", help="[N, C] probabilities (.npy/.npz), rows = DATA's training "
                                                          "examples in order")
    src.add_argument("--method", help="train this noisyfit method and audit with its own signal (default, when no "
                                      f"source is named: {DEFAULT_METHOD}, the best detector measured per cost)")
    src.add_argument("--oof", action="store_true", help="out-of-fold training (--folds, --oof-method), then "
                                                       "confident learning (cleanlab's workflow)")
    src.add_argument("--run", metavar="RUN_DIR", help="audit a finished `noisyfit train --out RUN_DIR`")
    src.add_argument("--annotators", metavar="COLS", help="comma-separated label columns (extra labels of DATA), "
                                                          "e.g. random1,random2,random3")
    p.add_argument("--multi-label", metavar="LABELS.csv",
                   help="multi-label audit: a CSV whose 'labels' column holds each example's classes separated by "
                        "'|' (optional id, true_labels); one-vs-rest confident learning per class on --pred-probs, or "
                        "on classifiers cross-fitted on --embedder's features or the CSV's other (numeric) columns")
    from noisyfit.commands.embed_options import add_audit_options

    add_audit_options(p, src)  # --embedder FILE (a model, or the embeddings of `noisyfit embed`) and its settings
    p.add_argument("--out", required=True, help="output folder: new or empty, unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true",
                   help="continue an audit in OUT: finished out-of-fold folds (OUT/folds/) and the --method run "
                        "(OUT/run/) are reused")
    p.add_argument("--overwrite", action="store_true", help="start again in a non-empty OUT: the audit's files in "
                                                            "it are deleted first")
    p.add_argument("--data-dir", help="data folder (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--download", action="store_true", default=None,
                   help="fetch the official CIFAR archive when it is not in the data dir (= data.download=true)")
    p.add_argument("--label-column", default=None, help="label column of a csv: source")
    p.add_argument("--noise", help="plant synthetic noise first, e.g. sym:0.2 (then true labels are known)")
    p.add_argument("--noisy-labels", help="an .npz written by `noisyfit noise` to use as the given labels")
    g = p.add_argument_group("detector (--pred-probs and out-of-fold)")
    g.add_argument("--detector", choices=("noisyfit", "cleanlab"), default="noisyfit",
                   help="built-in confident learning, or cleanlab used as it is (pip install 'noisyfit[cleanlab]')")
    g.add_argument("--filter-by", default="prune_by_noise_rate",
                   choices=("prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                            "predicted_neq_given", "low_normalized_margin", "low_self_confidence"))
    g.add_argument("--rank-by", default="self_confidence",
                   choices=("self_confidence", "normalized_margin", "confidence_weighted_entropy"))
    g.add_argument("--argmax-over", choices=("confident", "all"), default="confident",
                   help="confident-joint guess among several confident classes: the paper's rule or cleanlab's")
    g.add_argument("--frac-noise", type=float, default=1.0)
    g.add_argument("--min-examples-per-class", type=int, default=1)
    g.add_argument("--chunk-size", type=int, help="rows of pred_probs per streamed chunk")
    t = p.add_argument_group("training (--method and out-of-fold)")
    t.add_argument("--config", help="YAML config or preset, as for `noisyfit train`")
    t.add_argument("--folds", type=int, default=None, help="out-of-fold (implies --oof) and --embedder: number of "
                                                          "folds (default 5)")
    t.add_argument("--oof-method", default=None, help="out-of-fold (implies --oof): the method trained per fold "
                                                      "(default ce)")
    t.add_argument("--backbone")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--precision")
    a = p.add_argument_group("annotators")
    a.add_argument("--consensus", choices=("dawid_skene", "majority_vote"), default="dawid_skene",
                   help="how --annotators' labels are combined: dawid_skene (default; weighs each annotator by its "
                        "estimated confusion matrix) or majority_vote")
    a.add_argument("--crowd-backend", choices=("auto", "builtin", "crowdkit"), default="auto",
                   help="Dawid-Skene's EM: builtin (numpy), crowdkit (needs the crowd extra), auto (crowd-kit when "
                        "installed)")
    from noisyfit.commands.audit_clean import add_clean_options

    add_clean_options(p)
    p.add_argument("--top", type=int, default=24, help="suspects shown in the report's gallery (the full list of "
                                                       "flagged examples is in its table)")
    p.add_argument("--feature-image", default="auto", metavar="auto|off|HxW[xC]",
                   help="feature rows drawn as images in the report: auto (a square number of features, side >= 8, "
                        "none negative: e.g. digits as 8x8), off, or a shape such as 28x28 or 32x32x3")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars (lines per epoch or fold still print)")
    p.set_defaults(func=cmd_audit)
    accept_overrides_anywhere(p, "items")  # `audit DATA --out X train.epochs=5`


def _split_items(args) -> None:
    """``items`` -> ``args.data`` (the one item that is not a dotted key=value) and ``args.overrides``."""
    from noisyfit.data.labeled import DataError

    data = [i for i in args.items if not _OVERRIDE.match(i)]
    if len(data) > 1:
        raise DataError(f"audit takes one DATA, got {data}; config overrides look like train.epochs=5")
    args.data = data[0] if data else None
    args.overrides = [i for i in args.items if _OVERRIDE.match(i)]


# ---------------------------------------------------------------------------------------------- helpers
def _config(args, method: str):
    from noisyfit.commands.train import training_flags
    from noisyfit.config import check_numbers, load_config

    flags = training_flags(args)
    # the audited data set and method come from audit's own arguments; the whole set is audited
    flags.pop("method", None)
    flags.setdefault("data", {}).update(dataset=args.data, val_fraction=0.0)
    flags["method"] = {"name": method}
    cfg = load_config(args.config, args.overrides, flags=flags)
    check_numbers(cfg)  # a negative lr or zero epochs, before any data is loaded
    return cfg


def _load_train(args, name: str | None, data_dir: str | None):
    """The source training set with the given labels the audit is about (after --noise / --noisy-labels)."""
    from noisyfit.data.labeled import DataError
    from noisyfit.data.sources import load_dataset

    if not name:
        raise DataError("audit needs DATA (e.g. `noisyfit audit digits --out audit/`), or --run RUN_DIR.")
    from noisyfit.detect.clean import labelled_source

    if args.noise and args.noisy_labels:
        raise DataError("--noise and --noisy-labels are both set; keep one of them")
    cfg = _config(args, "ce")  # label column, image size, download, noise: flags and key=value overrides
    data = cfg.data
    train = load_dataset(name, data_dir, download=data.download, label_column=data.label_column,
                         image_size=data.image_size).train
    # the same labels as `noisyfit train` with these flags (--noise drawn with the training seed)
    train, keep = labelled_source(train, data, cfg.train.seed)
    if keep is not None:
        raise DataError(f"{data.noisy_labels_file} drops {int((~keep).sum())} examples, but this audit reads "
                        "every row of DATA in order; audit the original labels, a file written with `--clean "
                        "relabel`, or use the out-of-fold or --method audit, which leave dropped rows out.")
    return train


def _summary_table(issues, seconds: float, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    det = issues.detection_metrics() or {}
    table = Table(title=f"audit: {issues.detector}")
    for col in ("examples", "flagged", "est. noise", "true noise", "P", "R", "F1", "AUROC", "seconds"):
        table.add_column(col, justify="right")

    def f(v, pct=False):
        return "–" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    table.add_row(str(len(issues)), str(issues.num_issues), f(issues.estimated_noise_rate, True),
                  f(det.get("true_noise_rate"), True), f(det.get("precision")), f(det.get("recall")),
                  f(det.get("f1")), f(det.get("auroc")), f"{seconds:.1f}")
    console = Console(width=max(Console().width, 110))  # piped or logged (80 columns), headers were cut: "examp…"
    console.print(table)
    console.print(f"written: {out / 'issues.csv'}, {out / 'summary.json'}, {out / 'report.html'}")


def _run_labels(results: dict, train):
    """A finished run's labels on every source row and its keep mask, or (None, None) with a note."""
    from noisyfit.config import Config, ConfigError
    from noisyfit.data.labeled import DataError
    from noisyfit.detect.clean import labelled_source

    try:
        cfg = Config.from_dict(results.get("config") or {}, source="the run's results.json config")
        return labelled_source(train, cfg.data, cfg.train.seed)
    except (ConfigError, DataError, OSError) as err:
        _log_line(f"note: the run's training labels were not rebuilt ({err})")
        return None, None


def _feature_image_setting(setting: str, inputs) -> str:
    """``setting``, or ``off`` with a warning when its shape does not fit the rows (the audit is done by now)."""
    from noisyfit.report.feature_images import FeatureImageError, feature_images

    if inputs is None or np.ndim(inputs) != 2 or setting in ("auto", "off"):
        return setting
    try:
        feature_images(inputs, setting)
    except FeatureImageError as err:
        _log_line(f"warning: {err} The report shows feature values instead.")
        return "off"
    return setting


def _log_line(line: str) -> None:
    print(f"noisyfit audit: {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- command
def cmd_audit(args) -> int:
    from noisyfit import __version__
    from noisyfit.data.labeled import DataError
    from noisyfit.detect import audit_label_issues, consensus_issues, issues_from_run, load_pred_probs
    from noisyfit.detect.cleanlab_backend import BackendUnavailableError
    from noisyfit.detect.guardrails import audit_log, check_pred_probs, model_quality
    from noisyfit.report import write_report

    from noisyfit.commands.preflight import AUDIT_FILES, check_method_args, prepare_out_dir

    t0 = time.time()
    _split_items(args)
    if args.crowd_backend == "crowdkit":  # before any folder is made: it had ended in an ImportError traceback
        import importlib.util

        if importlib.util.find_spec("crowdkit") is None:
            raise DataError("--crowd-backend crowdkit needs crowd-kit, which is not installed: pip install "
                            "'noisyfit[crowd]', or leave --crowd-backend at auto (the built-in EM without it).")
    if args.feature_image not in ("auto", "off"):
        from noisyfit.report.feature_images import parse_shape

        parse_shape(args.feature_image)  # a typo is an error now, not after the audit
    if args.clean != "none" and (args.clean is not None or args.clean_threshold is not None):
        from noisyfit.detect.clean import check_threshold

        check_threshold(args.clean or "relabel-or-drop", args.clean_threshold)  # as early
    if args.multi_label:  # before the folder: what it would ignore is refused
        from noisyfit.commands.audit_multilabel import check_multilabel_args

        check_multilabel_args(args)
    # the folder first: a typo in --out must not cost a K-fold training
    out = prepare_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, command="audit", owned=AUDIT_FILES)
    if args.multi_label:
        from noisyfit.commands.audit_multilabel import audit_multilabel

        return audit_multilabel(args, out, _log_line)
    progress = not args.no_progress
    data_name, data_dir = args.data, args.data_dir
    # the label column the data are read with (--label-column, data.label_column=..., or a --run's config): the
    # retraining hint of a cleaned file must name it too
    label_column = _config(args, "ce").data.label_column
    train = None  # the source training set, for thumbnails / rows
    labelled, keep = None, None  # every source row with the labels audited, and rows dropped before: cleaned file
    extra: dict = {}
    neighbours = None  # an embedding audit's nearest neighbours of each flagged example, for the report
    oof = args.oof or ((args.folds is not None or args.oof_method is not None) and not args.embedder)
    if oof and (args.method or args.run or args.pred_probs or args.annotators):
        raise DataError("--folds / --oof-method ask for the out-of-fold audit, which trains its own models; drop them, "
                        "or drop --method / --run / --pred-probs / --annotators.")
    if args.knn_k is not None and args.knn_k < 1:
        raise DataError(f"--knn-k {args.knn_k}: at least 1")
    if args.embedder:  # the classifier's own options only, none it would ignore
        ignored = ([f"--{o}" for o, v in (("folds", args.folds), ("logreg-c", args.logreg_c != "auto" or None),
                                          ("seed", None if args.noise else args.seed))  # --noise draws with it
                    if v is not None] if args.classifier == "knn"
                   else ["--logreg-c"] if args.classifier == "mlp" and args.logreg_c != "auto" else [])
        if ignored:
            raise DataError(f"--classifier {args.classifier} does not use {', '.join(ignored)}"
                            + (" (no fitting, no folds: each example's neighbours vote, never itself)"
                               if args.classifier == "knn" else "") + "; drop it.")
    elif args.classifier != "logreg" or args.knn_k is not None or args.logreg_c != "auto":
        raise DataError("--classifier, --logreg-c and --knn-k set the classifier of an embedding audit: add "
                        "--embedder FILE, or drop them.")
    args.folds = 5 if args.folds is None else args.folds
    if not (oof or args.method or args.run or args.pred_probs or args.annotators or args.embedder):
        args.method = DEFAULT_METHOD
        extra["detector_choice"] = {"method": DEFAULT_METHOD, "chosen": "default", "why": DEFAULT_WHY}
        audit_log(f"detector: {DEFAULT_METHOD} (the default; --oof for out-of-fold CE + confident learning)")
    if args.run or args.method:
        if args.method:
            from noisyfit.engine.trainer import Trainer

            cfg = _config(args, args.method)
            check_method_args(cfg)
            run_dir = out / "run"
            resume = args.resume and (run_dir / "checkpoint.pt").is_file()
            Trainer(cfg, run_dir, resume=resume, command=["noisyfit", *sys.argv[1:]]).fit()
            mode = f"method {args.method} (trained in {run_dir})"
        else:
            run_dir = Path(args.run)
            mode = f"run {run_dir}"
        issues = issues_from_run(run_dir)
        run_results = json.loads((run_dir / "results.json").read_text())
        from noisyfit.detect.guardrails import run_quality

        extra["model_quality"] = run_quality(run_results, log=audit_log)  # warns when over half is flagged
        run_backbone = ((run_results.get("config") or {}).get("model") or {}).get("backbone")
        run_cfg = (run_results.get("config") or {}).get("data", {})
        label_column = run_cfg.get("label_column", "label") if args.run else label_column
        data_name = data_name or run_cfg.get("dataset")
        data_dir = data_dir or run_cfg.get("data_dir")
        try:
            from noisyfit.data.sources import load_dataset

            import warnings

            from noisyfit.data.labels import DataWarning

            with warnings.catch_warnings():
                if args.method:  # the run just loaded these data and said what there was to say about them
                    warnings.simplefilter("ignore", DataWarning)
                train = load_dataset(data_name, data_dir, label_column=run_cfg.get("label_column", "label"),
                                     image_size=run_cfg.get("image_size")).train
            if train.ids is not None:
                issues.ids = [train.ids[int(i)] for i in issues.index]
            if run_backbone == "mlp" and train.is_image:  # said by the trainer too; the report must say it
                from noisyfit.engine.trainer import PIXEL_MLP_WARNING

                extra["model_quality"]["warnings"].append(PIXEL_MLP_WARNING)
            labelled, keep = _run_labels(run_results, train)
        except (DataError, OSError) as err:  # the audit stands without thumbnails
            # a warning, not a note: the report then lacks thumbnails and ids, and no cleaned label file is written
            print(f"noisyfit audit: warning: the run's data {data_name!r} could not be loaded ({err}); the report has "
                  "no images or ids and no cleaned_labels.npz is written. Name the data where they are now: "
                  f"`noisyfit audit DATA --run {run_dir} ...`.", file=sys.stderr)
    elif args.annotators:
        train = _load_train(args, data_name, data_dir)
        cols = list(dict.fromkeys(c.strip() for c in args.annotators.split(",") if c.strip()))  # each once
        if not cols:
            raise DataError("--annotators names no column; give the annotators' columns, e.g. --annotators a,b,c")
        # a CSV's extra_<name> column is annotator <name>: the column's own name is taken too
        cols = [c[len("extra_"):] if c not in train.extra_labels and c.startswith("extra_") else c for c in cols]
        missing = [c for c in cols if c not in train.extra_labels]
        if missing:
            known = ("(CIFAR-10N has random1, random2, random3, aggre, worst)" if "random1" in train.extra_labels
                     else "(a CSV's column extra_<name> is annotator <name>; an .npz's array extra_<name> too)")
            raise DataError(f"{train.name}: no annotator column(s) {missing}; available: {sorted(train.extra_labels)} "
                            f"{known}.")
        if len(cols) < 3 and args.consensus == "dawid_skene":
            # with one annotator EM cannot tell its errors from the given label's: in a labelling team's trial it
            # called a mediocre annotator perfect and relabelled every disagreement (observed, not a benchmark)
            audit_log(f"warning: Dawid-Skene with {len(cols)} annotator(s) has too little agreement to estimate "
                      "each annotator's errors: its accuracies and posteriors come out overconfident. Use 3 or more "
                      "annotators per item, or read the flags as plain disagreements (--consensus majority_vote).")
        labelled = train
        issues = consensus_issues({c: train.extra_labels[c] for c in cols}, given=train.labels,
                                  method=args.consensus, class_names=train.class_names,
                                  true_labels=train.true_labels, ids=train.ids, backend=args.crowd_backend,
                                  seed=args.seed or 0)
        mode = f"{args.consensus} consensus of {', '.join(cols)}"
    else:
        if args.pred_probs:
            train = _load_train(args, data_name, data_dir)
            probs = load_pred_probs(args.pred_probs)
            labels, true, index, ids = train.labels, train.true_labels, None, train.ids
            labelled = train
            mode = f"pred_probs {args.pred_probs}"
            extra["model_quality"] = check_pred_probs(labels, probs, source=args.pred_probs, true_labels=true,
                                                      log=audit_log)  # warns when the rows look misaligned
        elif args.embedder:
            from noisyfit.embed.cli import audit_on_embeddings

            e = audit_on_embeddings(args, out, (lambda: _load_train(args, data_name, data_dir)) if data_name else None,
                                    progress=progress)
            train, probs, labels, true, index, ids, mode = (e.train, e.pred_probs, e.labels, e.true_labels, e.index,
                                                            e.ids, e.mode)
            labelled = train
            extra.update(e.summary)
        else:
            from noisyfit.data.sources import load_dataset
            from noisyfit.detect.clean import labelled_source
            from noisyfit.detect.oof import out_of_fold

            if not data_name:
                raise DataError("audit needs DATA (e.g. `noisyfit audit digits --out audit/`), or --run RUN_DIR.")
            cfg = _config(args, args.oof_method or "ce")
            check_method_args(cfg)
            splits = load_dataset(data_name, data_dir, download=cfg.data.download, label_column=cfg.data.label_column,
                                  image_size=cfg.data.image_size)
            # a live bar on a terminal; otherwise (a log file, a pipe) one line per fold and epoch
            bar = progress and sys.stderr.isatty()
            oof = out_of_fold(cfg, splits, folds=args.folds, epochs=args.epochs, seed=args.seed or 0,
                              progress=bar, cache_dir=out / "folds", log=None if bar else _log_line,
                              log_epochs=not bar)
            np.save(out / "pred_probs.npy", oof.pred_probs)
            train = splits.train  # inputs; the labels audited are the folds' (after any injected noise)
            labelled, keep = labelled_source(train, cfg.data, cfg.train.seed)
            probs, labels, true, index, ids = oof.pred_probs, oof.labels, oof.true_labels, oof.index, oof.ids
            extra["out_of_fold"] = {**oof.info, "seconds": oof.seconds, "pred_probs": "pred_probs.npy"}
            mode = f"out-of-fold {cfg.method.name}, {oof.info['folds']} folds x {oof.info['epochs']} epochs"
            extra["model_quality"] = model_quality(labels, probs, fold=oof.fold, true_labels=true, log=audit_log,
                                                   what=f"the out-of-fold {cfg.method.name} {cfg.model.backbone}")
        names = train.class_names
        try:
            if args.detector == "cleanlab":
                from noisyfit.detect.cleanlab_backend import audit_with_cleanlab

                issues = audit_with_cleanlab(labels, probs, filter_by=args.filter_by, rank_by=args.rank_by,
                                             class_names=names, ids=ids, true_labels=true, index=index,
                                             frac_noise=args.frac_noise,
                                             min_examples_per_class=args.min_examples_per_class)
            else:
                issues = audit_label_issues(labels, probs, filter_by=args.filter_by, rank_by=args.rank_by,
                                            frac_noise=args.frac_noise,
                                            min_examples_per_class=args.min_examples_per_class,
                                            argmax_over=args.argmax_over, class_names=names, ids=ids,
                                            true_labels=true, index=index, chunk_size=args.chunk_size,
                                            verbose=progress and sys.stderr.isatty(),
                                            check_quality=False)  # each source checked its model above
        except BackendUnavailableError as err:
            print(f"noisyfit audit: error: {err}", file=sys.stderr)
            return 2
        if args.embedder:  # each flag's reason also says how its nearest neighbours are labelled
            rows = np.flatnonzero(np.asarray(issues.is_issue)).tolist()
            sentences, near = e.explain(rows, names)
            for i, text in sentences.items():
                issues.reasons[i] = f"{issues.reasons.get(i, issues.rule)}; {text}"
            # the report shows them beside each suspect (rows here are the source's indices: index is 0..N-1)
            neighbours = {i: [(j, names[int(labels[j])]) for j in js] for i, js in near.items()}

    from noisyfit.commands.audit_clean import CLEANED_FILE, write_cleaned_labels

    cleaned = write_cleaned_labels(args, out, issues, labelled, keep, data_name, _log_line, label_column)
    files = {"issues": "issues.csv", "report": "report.html"}
    if cleaned:
        extra["cleaned_labels"] = cleaned
        files["cleaned_labels"] = CLEANED_FILE
    seconds = time.time() - t0
    issues.write_csv(out / "issues.csv")
    if issues.review is not None:  # the annotator audit's contested items: kept, but a minority gave the label
        issues.write_csv(out / "review.csv", which="review")
        files["review"] = "review.csv"
        if issues.review.any():
            _log_line(f"{int(issues.review.sum()):,} item(s) kept their label although at most half of their "
                      f"annotators gave it: {out / 'review.csv'} lists them for a person to look at")
    summary = {"schema": "noisyfit.audit/1", "noisyfit_version": __version__, "command": ["noisyfit", *sys.argv[1:]],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": data_name, "mode": mode,
               **issues.summary(), **extra, "seconds": seconds,
               "files": files}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    inputs = train.x if train is not None else None
    write_report(out / "report.html", issues, inputs=inputs, feature_names=getattr(train, "feature_names", None),
                 title=f"Label audit: {data_name}", subtitle=f"{mode} · {len(issues):,} examples", top=args.top,
                 feature_image=_feature_image_setting(args.feature_image, inputs),
                 why=extra.get("detector_choice", {}).get("why"),
                 cautions=(extra.get("model_quality") or {}).get("warnings") or (), neighbours=neighbours)
    _summary_table(issues, seconds, out)
    return 0
