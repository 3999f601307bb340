"""`noisyfit train`."""

from __future__ import annotations

import argparse

import sys
from pathlib import Path

from noisyfit.commands.override_args import accept_overrides_anywhere
from noisyfit.commands.summary import print_summary


def register(sub) -> None:
    p = sub.add_parser("train", help="train a method on a data set (results in OUT/results.json)",
                       description="Train one method. Precedence: defaults < --config YAML < flags < key=value "
                                   "overrides (e.g. train.epochs=5 method.args.q=0.7).")
    p.add_argument("--config", help="YAML config (see configs/); with --resume defaults to OUT/config.yaml")
    p.add_argument("--dataset", help="cifar10n-worst, cifar10, digits, folder:PATH, csv:PATH, npz:PATH, ...")
    p.add_argument("--data-dir", help="folder with the data (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--download", action="store_true", default=None,
                   help="fetch the official CIFAR archive when it is not in the data dir (= data.download=true)")
    p.add_argument("--noise", help="inject synthetic noise into the training labels, e.g. sym:0.4")
    p.add_argument("--noisy-labels", help="an .npz written by `noisyfit noise` to use as training labels")
    p.add_argument("--label-column", help="label column of a csv: data set (default: label; data.label_column)")
    # not an option of train: said with the two commands to run (a user's natural first try)
    p.add_argument("--embedder", help=argparse.SUPPRESS)
    p.add_argument("--method", help="ce, gce, elr, ... (`noisyfit list`), or your own: path/file.py:ClassName or "
                                    "module:ClassName")
    p.add_argument("--backbone", help="fastcnn, preact_resnet18, resnet34, mlp")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", help="auto, fp32, bf16, fp16")
    p.add_argument("--out", required=True, help="run folder: new or empty, unless --resume or --overwrite")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a non-empty OUT: its run files (results, checkpoints, logs) are deleted first")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop (checkpointed) after N epochs; continue later with --resume")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    accept_overrides_anywhere(p, "overrides")  # `train --dataset d a.b=1 --epochs 3 c.d=2`
    p.set_defaults(func=cmd_train)


def training_flags(args) -> dict:
    """Config values given as command-line options (absent options and None are skipped).

    Shared by every command that trains (`train`, `audit --method`, out-of-fold audits).
    """
    flags: dict = {}

    def put(section, key, attr):
        value = getattr(args, attr, None)
        if value is not None:
            flags.setdefault(section, {})[key] = value

    for section, key, attr in (("data", "dataset", "dataset"), ("data", "data_dir", "data_dir"),
                               ("data", "noise", "noise"), ("data", "noisy_labels_file", "noisy_labels"),
                               ("data", "label_column", "label_column"), ("method", "name", "method"),
                               ("model", "backbone", "backbone"), ("train", "epochs", "epochs"),
                               ("train", "batch_size", "batch_size"), ("optim", "lr", "lr"),
                               ("train", "seed", "seed"), ("train", "device", "device"),
                               ("train", "precision", "precision")):
        put(section, key, attr)
    if getattr(args, "no_progress", False):
        flags.setdefault("train", {})["progress"] = False
    if getattr(args, "download", None):
        flags.setdefault("data", {})["download"] = True
    return flags


def absolute_paths(cfg) -> None:
    """The run's data paths and method file as absolute ones where they exist relative to the working folder, so
    that its ``config.yaml`` finds them from any folder (``train --config``, ``--resume``, ``audit --run``,
    ``predict``)."""
    from noisyfit.data.paths import absolute_if_here
    from noisyfit.data.sources import absolute_spec
    from noisyfit.methods.base import absolute_method_spec

    cfg.data.dataset = absolute_spec(cfg.data.dataset)
    cfg.method.name = absolute_method_spec(cfg.method.name)
    for key in ("data_dir", "noisy_labels_file"):
        if getattr(cfg.data, key):
            setattr(cfg.data, key, absolute_if_here(getattr(cfg.data, key)))


def cmd_train(args) -> int:
    from noisyfit.commands.preflight import RUN_FILES, check_method_args, prepare_out_dir
    from noisyfit.config import check_numbers, load_config
    from noisyfit.data.labeled import DataError
    from noisyfit.engine.trainer import Trainer

    if args.embedder:
        data = args.dataset or "DATA"
        raise DataError(f"train has no --embedder: embed the data first, then train on the embeddings: `noisyfit embed "
                        f"{data} --model {args.embedder} --out emb.npz`, then `noisyfit train --dataset npz:emb.npz ...` "
                        "(predict then embeds new images the same way).")

    prepare_out_dir(args.out, resume=args.resume, overwrite=args.overwrite, command="train", owned=RUN_FILES)
    config_path = args.config
    if args.resume and config_path is None:
        config_path = Path(args.out) / "config.yaml"
        if not config_path.exists() or not (Path(args.out) / "checkpoint.pt").exists():
            from noisyfit.config import ConfigError

            raise ConfigError(f"--resume: {args.out} holds no run to resume (checkpoint.pt is written after the "
                              "first epoch, or on the first checkpoint interval); start the run again with "
                              "--overwrite instead of --resume, or choose a new folder")
    cfg = load_config(config_path, args.overrides, flags=training_flags(args))
    if not args.resume:  # a resumed run keeps its recorded config (resume compares it with the checkpoint's)
        absolute_paths(cfg)
    check_numbers(cfg)  # before the data is loaded: a negative lr, zero epochs...
    check_method_args(cfg)  # ... and a value the method refuses
    print(f"noisyfit train: loading {cfg.data.dataset} ...", file=sys.stderr, flush=True)  # CIFAR: minutes
    trainer = Trainer(cfg, args.out, resume=args.resume, command=["noisyfit", *sys.argv[1:]])
    results = trainer.fit(stop_after_epoch=args.stop_after)
    if results is not None and trainer.is_main:
        print_summary([(cfg.method.name, results)])
        print(f"results: {Path(args.out) / 'results.json'}")
    return 0
