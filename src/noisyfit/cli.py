"""Command line: ``noisyfit train | noise | demo`` and ``noisyfit --version``.

Errors a user can fix (bad data, config, names, paths) are printed as one message with exit code 2,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from noisyfit import __version__


def _user_errors() -> tuple[type[BaseException], ...]:
    from noisyfit.config import ConfigError
    from noisyfit.data.labeled import DataError
    from noisyfit.engine.trainer import OutputDirError, TrainingError
    from noisyfit.models.backbones import UnknownNameError

    return (ConfigError, DataError, TrainingError, OutputDirError, UnknownNameError, FileNotFoundError)


# ---------------------------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a method on a data set (results in OUT/results.json)",
                       description="Train one method. Precedence: defaults < --config YAML < flags < key=value "
                                   "overrides (e.g. train.epochs=5 method.args.q=0.7).")
    p.add_argument("--config", help="YAML config (see configs/); with --resume defaults to OUT/config.yaml")
    p.add_argument("--dataset", help="cifar10n-worst, cifar10, digits, folder:PATH, csv:PATH, npz:PATH, ...")
    p.add_argument("--data-dir", help="folder with the data (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--noise", help="inject synthetic noise into the training labels, e.g. sym:0.4")
    p.add_argument("--noisy-labels", help="an .npz written by `noisyfit noise` to use as training labels")
    p.add_argument("--method", help="ce, gce, sce, ...")
    p.add_argument("--backbone", help="fastcnn, preact_resnet18, resnet34, mlp")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", help="auto, fp32, bf16, fp16")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop (checkpointed) after N epochs; continue later with --resume")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.set_defaults(func=cmd_train)


def _flags(args) -> dict:
    flags: dict = {}

    def put(section, key, value):
        if value is not None:
            flags.setdefault(section, {})[key] = value

    put("data", "dataset", args.dataset)
    put("data", "data_dir", args.data_dir)
    put("data", "noise", args.noise)
    put("data", "noisy_labels_file", args.noisy_labels)
    put("method", "name", args.method)
    put("model", "backbone", args.backbone)
    put("train", "epochs", args.epochs)
    put("train", "batch_size", args.batch_size)
    put("optim", "lr", args.lr)
    put("train", "seed", args.seed)
    put("train", "device", args.device)
    put("train", "precision", args.precision)
    if args.no_progress:
        put("train", "progress", False)
    return flags


def cmd_train(args) -> int:
    from noisyfit.config import load_config
    from noisyfit.engine.trainer import Trainer

    config_path = args.config
    if args.resume and config_path is None:
        config_path = Path(args.out) / "config.yaml"
    cfg = load_config(config_path, args.overrides, flags=_flags(args))
    trainer = Trainer(cfg, args.out, resume=args.resume, command=["noisyfit", *sys.argv[1:]])
    results = trainer.fit(stop_after_epoch=args.stop_after)
    if results is not None and trainer.is_main:
        _print_summary([(cfg.method.name, results)])
        print(f"results: {Path(args.out) / 'results.json'}")
    return 0


# ---------------------------------------------------------------------------------------------- noise
def _add_noise(sub) -> None:
    p = sub.add_parser("noise", help="write a noisy-label file from a data set and a noise spec")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--spec", required=True,
                   help="sym:R (flip to another class), symall:R (resample over all classes), asym:R, "
                        "pairflip:R, idn:R, matrix:PATH.npy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz (use with `noisyfit train --noisy-labels`)")
    p.set_defaults(func=cmd_noise)


def cmd_noise(args) -> int:
    from noisyfit.data.noise import apply_noise, save_noisy_labels
    from noisyfit.data.sources import load_dataset

    splits = load_dataset(args.dataset, args.data_dir)
    _, result = apply_noise(splits.train, args.spec, seed=args.seed)
    path = save_noisy_labels(args.out, result, splits.train.name)
    print(f"{path}: {len(result.labels)} labels, spec {result.spec}, realised noise rate "
          f"{result.noise_rate:.4f}")
    return 0


# ---------------------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="digits with 40%% symmetric noise: CE against a robust method (< 1 min)")
    p.add_argument("--out", help="keep the run folders here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="ce,gce")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from noisyfit.demo import run_demo

    rows = run_demo(methods=args.methods.split(","), seed=args.seed, out=args.out)
    _print_summary(rows, title="digits, 40% symmetric noise (sym:0.4), MLP, 30 epochs")
    return 0


def _print_summary(rows, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("method", "test acc (last)", "test acc (val-selected)", "flag precision", "flag recall",
                "flag F1", "AUROC", "est. / true noise", "s/epoch"):
        table.add_column(col, justify="right" if col != "method" else "left")

    def f(v, pct=True):
        return "–" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.3g}")

    for name, r in rows:
        det = r.get("detection") or {}
        noise = ("–" if det.get("estimated_noise_rate") is None
                 else f"{100 * det['estimated_noise_rate']:.1f}% / {100 * det['true_noise_rate']:.1f}%")
        table.add_row(name, f(r["final"]["test_acc"]), f(r["selected"]["test_acc"]), f(det.get("precision")),
                      f(det.get("recall")), f(det.get("f1")), f(det.get("auroc")), noise,
                      f(r["compute"]["seconds_per_epoch"], pct=False))
    Console().print(table)


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisyfit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"noisyfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_noise(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return args.func(args)
    except _user_errors() as e:
        print(f"noisyfit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is checkpointed (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
