"""`noisyfit embed` (a data set's embeddings from a model file) and `noisyfit export-backbone` (a run's backbone
as a model file).

    noisyfit embed folder:photos --model backbone.pt2 --out emb.npz
    noisyfit export-backbone runs/x --out backbone.onnx

The embeddings file holds ``x`` (``[N, D]`` float32), ``y`` (given labels), ``ids``, ``class_names``,
``index``, ``true_labels`` when known and ``info`` (the embedder and its settings, as JSON), plus ``x_test``,
``y_test``, ``ids_test`` when DATA has a test split; it is also a data set for ``npz:PATH`` and the input of
``noisyfit audit --embedder emb.npz``. New unlabelled images give a file of ``x``, ``ids`` and ``info`` only,
which ``noisyfit predict`` reads.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _log(command: str):
    def log(line: str) -> None:
        print(f"noisyfit {command}: {line}", file=sys.stderr, flush=True)

    return log


def register(sub) -> None:
    from noisyfit.commands.embed_options import add_settings_options

    p = sub.add_parser("embed", help="embeddings of a data set from a model file (run, torch.export, TorchScript, "
                                     "ONNX), with sample ids",
                       description="Embeddings of DATA's training split (in its row order) from a model file, written "
                                   "with sample ids and given labels (and of its test split, when it has one, as "
                                   "x_test/y_test); or of new, unlabelled images (an image file, "
                                   "or a folder with image files directly in it), written with ids only.")
    p.add_argument("data", metavar="DATA", help="digits, cifar10, folder:PATH, csv:PATH, npz:PATH, a bare path ... (its "
                                                "training split is embedded, in its row order); or new images: an "
                                                "image file or a folder of them")
    p.add_argument("--model", required=True, metavar="FILE",
                   help="a noisyfit run folder, a torch.export program (.pt2), a TorchScript module or an ONNX "
                        "model (onnxruntime: pip install 'noisyfit[onnx]')")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="embeddings file to write")
    p.add_argument("--data-dir", help="data folder (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--label-column", default="label", help="label column of a csv: source")
    p.add_argument("--image-size", default=None, metavar="N|H,W",
                   help="data.image_size of an image folder (the size images are decoded to; --input-size is the "
                        "embedder's)")
    add_settings_options(p.add_argument_group("embedder"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_embed)

    e = sub.add_parser("export-backbone", help="write a finished run's backbone (features before the head) as a "
                                               "torch.export, ONNX or TorchScript embedder file")
    e.add_argument("run", metavar="RUN_DIR", help="a finished `noisyfit train --out` folder")
    e.add_argument("--out", required=True, metavar="FILE",
                   help=".pt2 (torch.export), .onnx (pip install 'noisyfit[onnx]') or .pt / .ts (TorchScript)")
    e.add_argument("--format", choices=("torch.export", "onnx", "torchscript"), default=None,
                   help="default: from the suffix of --out")
    e.add_argument("--checkpoint", choices=("auto", "last", "best"), default="auto",
                   help="run folders: auto (default) = the weights `predict` uses (best_model.pt when the run "
                        "selected an epoch, else the last), last = checkpoint.pt, best = best_model.pt")
    e.add_argument("--network", type=int, default=0, help="two-network methods: which network (default 0)")
    e.set_defaults(func=cmd_export)


def cmd_embed(args) -> int:
    from noisyfit.data.folder import parse_image_size
    from noisyfit.data.sources import load_dataset
    from noisyfit.embed import embed_data, load_embedder
    from noisyfit.embed.cli import settings_from_args
    from noisyfit.embed.models import parse_size, stats_text

    log = _log("embed")
    # the model first: a typo in --model must not wait for a data set to decode
    embedder = load_embedder(args.model, settings_from_args(args), checkpoint=args.checkpoint, network=args.network)
    size = parse_size(args.image_size)
    size = parse_image_size(list(size)) if size is not None else None
    new = _new_images(args.data)
    if new is not None:
        return _embed_new_images(args, embedder, new, size, log)
    splits = load_dataset(_with_kind(args.data), args.data_dir, label_column=args.label_column, image_size=size)
    train = splits.train
    emb = embed_data(embedder, train, progress=not args.no_progress, log=log)
    emb.info["command"] = ["noisyfit", *sys.argv[1:]]
    # the test split too (x_test, y_test...): a run trained on the file then reports its test accuracy
    test = None if splits.test is None else embed_data(embedder, splits.test, progress=not args.no_progress, log=log)
    if test is not None:
        emb.info["test_examples"] = len(test)
    path = emb.save(args.out, test=test)
    d = emb.info["embedder"]
    also = f", and the {len(test):,} of its test split" if test is not None else ""
    log(f"{path}: {len(emb):,} examples{also} x {emb.dim} dimensions with ids and given labels "
        f"({emb.info['seconds']:.1f} s; "
        f"{d['format']} model, input {'x'.join(map(str, d['input_size'])) if d['input_size'] else 'as stored'}, "
        f"mean {stats_text(d['mean'])}, std {stats_text(d['std'])})")
    return 0


def _with_kind(spec: str) -> str:
    """A bare path as the kind of data set it is (``photos/`` -> ``folder:photos/``), as `noisyfit predict` reads
    it; anything else unchanged."""
    from noisyfit.data.sources import _PATH_KINDS

    kind, sep, _ = spec.partition(":")
    path = Path(spec).expanduser()
    if (sep and kind.lower() in _PATH_KINDS) or not path.exists():
        return spec
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".tar", ".gz", ".tgz"):
        return f"folder:{spec}"
    return {".npz": f"npz:{spec}", ".csv": f"csv:{spec}"}.get(suffix, spec)


def _new_images(spec: str) -> Path | None:
    """New images without labels, as `noisyfit predict` takes them: one image file, or a folder with image files
    directly in it (``folder:`` or a bare path); None for anything else (a data set)."""
    from noisyfit.data.folder import has_loose_images, is_image_file

    kind, sep, rest = spec.partition(":")
    if sep and kind.lower() != "folder":
        return None
    path = Path(rest if sep else spec).expanduser()
    if (not sep and is_image_file(path)) or (path.is_dir() and has_loose_images(path)):
        return path
    return None


def _embed_new_images(args, embedder, path: Path, size, log) -> int:
    """Embeddings of unlabelled images (every file decoded at one size, as an image folder is), with ids."""
    from noisyfit.data.folder import _unreadable, decode_image_files, new_image_files
    from noisyfit.data.labeled import DataError
    from noisyfit.embed.extract import embed_rows, save_unlabelled_embeddings
    from noisyfit.embed.models import stats_text

    size = size or embedder.input_size
    if size is None:
        raise DataError(f"{path}: new images are decoded to one size before embedding, and {embedder.path} records no "
                        "input size: give --image-size H,W (e.g. the size its training images were decoded to).")
    root, ids = new_image_files(path)
    images, resized, failed = decode_image_files([root / i for i in ids], tuple(size))
    if failed:
        raise _unreadable(path, [(ids[k], why) for k, why in failed], len(ids))
    if resized:
        log(f"{resized} of {len(ids)} image(s) resized to the decoding size {size[0]}x{size[1]}")
    t0 = time.time()
    x = embed_rows(embedder, images, str(path), ids=ids, progress=not args.no_progress, log=log)
    d = {**embedder.describe(), "resolved_path": str(Path(embedder.path).expanduser().resolve())}
    info = {"embedder": d, "data": str(path), "num_examples": len(x), "dim": int(x.shape[1]),
            "image_size": [int(size[0]), int(size[1])], "seconds": time.time() - t0, "labels": None,
            "command": ["noisyfit", *sys.argv[1:]]}
    out = save_unlabelled_embeddings(args.out, x, ids, info)
    log(f"{out}: {len(x):,} new images x {x.shape[1]} dimensions with ids, no labels ({info['seconds']:.1f} s; "
        f"decoded at {size[0]}x{size[1]}; {d['format']} model, mean {stats_text(d['mean'])}, std "
        f"{stats_text(d['std'])}). `noisyfit predict RUN {out}` takes them when RUN's training images were embedded "
        "the same way (it checks); `noisyfit predict RUN IMAGES` embeds the images as RUN's were.")
    return 0


def cmd_export(args) -> int:
    from noisyfit.embed import export_backbone, load_embedder
    from noisyfit.embed.models import stats_text

    path = export_backbone(args.run, args.out, format=args.format, checkpoint=args.checkpoint, network=args.network)
    d = load_embedder(path).describe()
    print(f"{path}: {d['format']} embedder of {d.get('backbone')} ({d.get('network')}, {d.get('checkpoint')} checkpoint of "
          f"{args.run}), {d.get('feature_dim')}-d features; input {d['input']} "
          f"{'x'.join(map(str, d['input_size'])) if d['input_size'] else ''}, mean {stats_text(d['mean'])}, "
          f"std {stats_text(d['std'])}")
    return 0
