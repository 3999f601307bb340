"""`noisyfit predict RUN DATA [--out preds.csv]`: a finished run's model (its ``model.pt``) on raw inputs.

DATA is one of

* a data set as ``noisyfit train --dataset`` takes it (``npz:PATH``, ``csv:PATH``, ``folder:PATH``, ``digits``,
  ``cifar10``...): its test split, or its training split when it has no test split (``--split`` chooses).
  Images of an image folder are decoded as for training and resized to the model's input size. When the
  data carry labels, the accuracy against them is printed;
* new images without labels: one image file, or a folder with image files directly in it (subfolders
  included; ids are the paths relative to the folder), decoded as an image folder is for training and
  resized to the model's input size;
* a ``.npy`` array of raw inputs: ``uint8`` images ``[N, H, W, C]`` (``[N, H, W]`` for grey; another height
  and width are resized to the model's, with a note) or feature rows ``[N, D]`` as the run was trained on
  them (the model normalises them itself);
* an ``.npz`` without labels (its ``x``, or ``x_test``, and optional ``ids``), or a ``.csv`` without a label
  column (every column but ``id``, ``split``, ``true_label`` is a feature; a run trained on a CSV matches them
  to its training columns by name, in any order, and refuses missing or unknown ones);
  with labels, a bare ``.npz`` / ``.csv`` / folder path is read as ``npz:`` / ``csv:`` / ``folder:``.

A run trained on the embeddings file of ``noisyfit embed`` (feature rows) takes images too: they are decoded at
the size its training images were and sent through the embedder that made its training rows, with the same
settings, both recorded in its ``model.pt`` (``--embedder FILE`` names the file when it has moved).

The CSV (into ``--out``, else onto the standard output, the other lines then on the standard error) has one
row per sample: ``id`` (the data's ids, else the row number), ``predicted`` (a class name)
and ``prob_<class>`` for every class of the run.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from noisyfit.data.folder import has_loose_images, is_image_file


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict the classes of new data with a finished run's model",
                       description="Predict with a finished run's model.pt: writes OUT (CSV: id, predicted, "
                                   "prob_<class>...). DATA: a data set as --dataset takes it (npz:PATH, csv:PATH, "
                                   "folder:PATH, digits...), or an .npy/.npz/.csv of raw inputs.")
    p.add_argument("run", metavar="RUN", help="the --out folder of a finished `noisyfit train` run, or its model.pt")
    p.add_argument("data", metavar="DATA", help="npz:PATH, csv:PATH, folder:PATH, a data set name, an image file, "
                                                "a folder of new images, or an .npy of raw inputs")
    p.add_argument("--out", default="-", help="CSV to write (id, predicted, prob_<class> per class); default or "
                                             "'-': the standard output, with the other lines on the standard error")
    p.add_argument("--split", choices=("auto", "test", "train"), default="auto",
                   help="which split of a data set to predict (auto: test when there is one, else train)")
    p.add_argument("--data-dir", help="folder with the data (default: $NOISYFIT_DATA_DIR or ../shared/data)")
    p.add_argument("--label-column", default="label", help="label column of a CSV (default: label)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, help="samples per forward pass (default: the run's eval batch size)")
    p.add_argument("--tta", default="auto", choices=("auto", "none", "mirror", "mirror_translate"),
                   help="test-time augmentation of images (default auto: the run's train.eval_tta, so predictions "
                        "match the accuracy the run recorded; none: one forward pass per image)")
    from noisyfit.commands.embed_options import add_settings_options

    g = p.add_argument_group("runs trained on embeddings (npz:emb.npz of `noisyfit embed`)")
    g.add_argument("--embedder", metavar="FILE",
                   help="embed the images with this model first (default: the embedder that made the run's "
                        "training rows, as its embeddings file recorded it, when DATA holds images). The settings "
                        "below default to those the training rows were made with, then the file's own")
    add_settings_options(g, batch_flag="--embed-batch-size", device=False)
    p.set_defaults(func=cmd_predict)


@dataclass
class Inputs:
    x: np.ndarray
    ids: list[str]
    labels: list[str] | None  # class names of the data's labels, when it has labels
    true_labels: list[str] | None
    what: str  # for messages: "the test split of npz:data.npz"
    note: str | None = None  # printed before the predictions (e.g. what was resized)
    columns: list[str] | None = None  # a table's feature column names, in the order of x's columns


def _csv_to_stdout(args) -> bool:
    """No --out (or '-'): the CSV goes to the standard output, so every other line to the standard error."""
    return args.out in (None, "-")


def cmd_predict(args) -> int:
    from noisyfit.predictor import load_predictor

    to_stdout = _csv_to_stdout(args)
    say = functools.partial(print, file=sys.stderr if to_stdout else sys.stdout)  # stdout carries the CSV then
    model = load_predictor(args.run, device=args.device, tta=args.tta)
    inputs = _inputs(args, model)
    if inputs.note:
        say(inputs.note)
    logits = model.logits(inputs.x, batch_size=args.batch_size)
    pred = logits.argmax(1).numpy()
    import torch

    probs = torch.softmax(logits.double(), dim=1).numpy()
    out = write_predictions(None if to_stdout else args.out, inputs.ids, pred, probs, model.class_names)
    rec = model.record
    epoch = "" if rec.get("epoch") is None else f", epoch {rec['epoch'] + 1}"
    acc = "" if rec.get("test_acc") is None else f"; the run recorded test accuracy {rec['test_acc']:.4f} for it"
    what = f"{len(pred)} prediction{'' if len(pred) == 1 else 's'} of {inputs.what}"
    say(f"{what} -> {out or 'standard output'} (model: {rec.get('weights', '?')} weights{epoch}{acc})")
    names = np.array(model.class_names, dtype=object)[pred]
    for label_set, which in ((inputs.labels, "labels"), (inputs.true_labels, "true labels")):
        if label_set is None or not len(pred):
            continue
        given = np.array(label_set, dtype=object)
        unknown = sorted(set(given) - set(model.class_names))
        if unknown:
            say(f"no accuracy against the data's {which}: {len(unknown)} of their classes are not classes of the "
                f"model (e.g. {unknown[0]!r})")
            continue
        say(f"accuracy against the data's {which}: {float(np.mean(names == given)):.4f} ({len(pred)} samples)")
    return 0


# ---------------------------------------------------------------------------------------------- via an embedder
def _inputs(args, model) -> Inputs:
    """DATA as the model takes it. A model trained on embeddings of images gets images (a folder, image files, a
    uint8 array or data set) through the embedder that made its training rows, or through --embedder."""
    from noisyfit.data.labeled import DataError

    read = dict(split=args.split, data_dir=args.data_dir, label_column=args.label_column)
    if model.is_image:
        if args.embedder:
            raise DataError("--embedder: this run takes images itself (it was not trained on embeddings); drop it.")
        return read_inputs(args.data, model, **read)
    if not args.embedder and not model.embedder_path():
        return read_inputs(args.data, model, **read)
    if _holds_images(args.data):  # decoded from files: at the size the training images were decoded to
        embedder = _embedder(args, model)
        return _embedded(model, embedder, read_inputs(args.data, _images_for(model, embedder), **read))
    raw = read_unchecked(args.data, model, **read)
    if _are_images(raw.x):  # an array or data set of images (npz:, cifar10, a uint8 .npy)
        embedder = _embedder(args, model)
        return _embedded(model, embedder, _checked(raw, _images_for(model, embedder)))
    if args.embedder:
        raise DataError(f"--embedder: {raw.what} holds feature rows of shape {list(np.shape(raw.x))}, not images; "
                        "drop --embedder to predict them as they are.")
    _check_embeddings_file(args.data, model)
    return _checked(raw, model)


def _are_images(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim in (3, 4)


def _embedder(args, model):
    """--embedder (with its settings), else the embedder that made the run's training rows."""
    from noisyfit.embed import EmbedSettings, embedder_for
    from noisyfit.embed.for_model import recorded_embedder, settings_differ

    settings = EmbedSettings(input_size=args.input_size, mean=args.mean, std=args.std,
                             batch_size=args.embed_batch_size)
    run_options = {}  # a run folder as --embedder: its weights and network as given
    if args.embedder:
        run_options = {"checkpoint": args.checkpoint, "network": args.network}
    embedder = embedder_for(model, args.embedder, settings, **run_options)
    differs = settings_differ(recorded_embedder(model), embedder.describe())
    if differs:  # the user's choice, but the predictions no longer mean what the run's accuracy says
        print(f"note: the embedder's {', '.join(differs)} differ from those the run's training rows were made "
              "with: its predictions are not those the run's accuracy describes.",
              file=sys.stderr if _csv_to_stdout(args) else sys.stdout)
    return embedder


def _holds_images(spec: str) -> bool:
    """DATA names image files (an image folder or list, an image file, a folder of them): they are decoded at a
    size chosen before reading them."""
    kind, sep, _ = spec.partition(":")
    if sep and kind.lower() in ("folder", "list"):
        return True
    if sep:
        return False
    path = Path(spec).expanduser()
    return path.exists() and (path.is_dir() or is_image_file(path) or path.suffix.lower() in (".tar", ".gz", ".tgz"))


def _check_embeddings_file(spec: str, model) -> None:
    """Embeddings of new images made by `noisyfit embed` must come from the run's embedder, decoded at the same
    size: else their rows are not what the model learned from, and predictions change without a word."""
    from noisyfit.data.labeled import DataError
    from noisyfit.embed.for_model import settings_differ

    kind, sep, rest = spec.partition(":")
    path = Path(rest if sep and kind.lower() == "npz" else spec).expanduser()
    if path.suffix.lower() != ".npz" or not path.is_file():
        return
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"])) if "info" in z.files else None
    except (OSError, ValueError, EOFError):
        return
    if not isinstance(info, dict) or not isinstance(info.get("embedder"), dict):
        return
    src = model.input_source or {}
    want, got = src.get("embedder") or {}, info["embedder"]
    name_of = lambda d: Path(str(d.get("resolved_path") or d.get("path") or "")).name  # noqa: E731
    if name_of(want) and name_of(got) and name_of(want) != name_of(got):
        raise DataError(f"{path} holds embeddings by {name_of(got)}, but this run was trained on embeddings by "
                        f"{name_of(want)}: predict the images themselves (`noisyfit predict RUN IMAGES` embeds them "
                        "as the training rows were), or embed them with that file.")
    # the file may have moved: its settings, not its path, are compared
    differs = settings_differ(want, got) + (["size the images were decoded to"] if src.get("image_size") is not None
                                            and src["image_size"] != info.get("image_size") else [])
    if differs:
        raise DataError(f"{path} was embedded otherwise than this run's training rows ({', '.join(differs)} differ): "
                        "its predictions would not mean what the run's accuracy says. Predict the images themselves "
                        "(`noisyfit predict RUN IMAGES` embeds them as the training rows were), or embed them with "
                        "the same settings" + (f" (images decoded at {'x'.join(map(str, src['image_size']))}: "
                                               "noisyfit embed IMAGES --image-size "
                                               f"{','.join(map(str, src['image_size']))} ...)"
                                               if "size the images were decoded to" in differs else "") + ".")


def _images_for(model, embedder) -> "_ImagesFor":
    from noisyfit.data.labeled import DataError
    from noisyfit.embed.for_model import decode_size

    size = decode_size(model, embedder)
    if size is None:
        raise DataError(f"{embedder.path} records no input size, and the run does not say which size its images "
                        "were decoded to: give --input-size H,W (the embedder's input size).")
    return _ImagesFor(size)


class _ImagesFor:
    """What ``read_inputs`` checks images against when an embedder comes first: uint8 images at ``size``."""

    is_image = True

    def __init__(self, size: tuple[int, int]):
        self.input_shape = (int(size[0]), int(size[1]), 3)

    def check_inputs(self, x) -> np.ndarray:
        from noisyfit.predictor import PredictorError

        x = np.asarray(x)
        if x.ndim == 3 and x.dtype == np.uint8:
            x = x[..., None]
        h, w, _ = self.input_shape
        if x.ndim != 4 or x.dtype != np.uint8 or tuple(x.shape[1:3]) != (h, w) or x.shape[3] not in (1, 3):
            raise PredictorError(f"got an array of shape {list(x.shape)} ({x.dtype}); the embedder takes uint8 "
                                 f"images [N, {h}, {w}, 3] here.")
        return x


def _embedded(model, embedder, inputs: Inputs) -> Inputs:
    """The images of ``inputs`` (already at the decoding size) as the embedder's rows, checked against the run."""
    from noisyfit.data.labeled import DataError
    from noisyfit.embed import embed_rows
    from noisyfit.embed.models import stats_text

    x = embed_rows(embedder, inputs.x, inputs.what, ids=inputs.ids, progress=False)
    d = model.input_shape[0]
    if x.shape[1] != d:
        raise DataError(f"{embedder.path} gives {x.shape[1]} values per image, but this run was trained on rows of "
                        f"{d}: it is not the embedder that made the run's training rows.")
    desc = embedder.describe()
    made = (f"{len(x)} image(s) embedded by {embedder.path} ({desc['format']}, input "
            f"{'x'.join(map(str, desc['input_size'])) if desc['input_size'] else 'as decoded'}, mean "
            f"{stats_text(desc['mean'])}, std {stats_text(desc['std'])})")
    inputs.x, inputs.note = x, f"{inputs.note}; {made}" if inputs.note else made
    return inputs


def write_predictions(path, ids, pred: np.ndarray, probs: np.ndarray, class_names: list[str]) -> Path | None:
    """The CSV into ``path``, or onto the standard output when ``path`` is None."""
    def rows(w):
        w.writerow(["id", "predicted", *(f"prob_{c}" for c in class_names)])
        for i, k in enumerate(pred):
            w.writerow([ids[i], class_names[k], *(f"{p:.6g}" for p in probs[i])])

    if path is None:
        rows(csv.writer(sys.stdout, lineterminator="\n"))
        sys.stdout.flush()
        return None
    path = Path(path)
    if path.is_dir():
        from noisyfit.data.labeled import DataError

        raise DataError(f"--out {path} is a folder; give a file name, e.g. --out {path / 'preds.csv'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        rows(csv.writer(f))
    return path


# ---------------------------------------------------------------------------------------------- inputs
def read_inputs(spec: str, model, *, split: str = "auto", data_dir=None, label_column: str = "label") -> Inputs:
    """The inputs DATA names (see the module docstring), checked against what ``model`` takes."""
    return _checked(read_unchecked(spec, model, split=split, data_dir=data_dir, label_column=label_column), model)


def read_unchecked(spec: str, model, *, split: str = "auto", data_dir=None, label_column: str = "label") -> Inputs:
    """The inputs DATA names, as read (``model`` says whether image files are expected and their size)."""
    from noisyfit.data.labeled import DataError

    kind, sep, rest = spec.partition(":")
    path = Path(spec).expanduser()
    if sep and kind.lower() == "folder" and model.is_image:
        loose = Path(rest).expanduser()
        if loose.is_dir() and has_loose_images(loose):  # new images, not the training layout
            return _unlabelled_images(loose, model)
    if not (sep and kind.lower() in ("folder", "csv", "npz")) and path.exists():
        suffix = path.suffix.lower()
        if path.is_file() and suffix == ".npy":
            x = _load_npy(path)
            inputs = Inputs(x, [str(i) for i in range(len(x))], None, None, str(path))
        elif model.is_image and (is_image_file(path) or (path.is_dir() and has_loose_images(path))):
            inputs = _unlabelled_images(path, model)
        elif path.is_file() and suffix == ".npz":
            inputs = _raw_npz(path, split) or _dataset(f"npz:{spec}", model, split, data_dir, label_column)
        elif path.is_file() and suffix == ".csv":
            inputs = _raw_csv(path, split, label_column) or _dataset(f"csv:{spec}", model, split, data_dir,
                                                                    label_column)
        elif path.is_dir() or suffix in (".tar", ".gz", ".tgz"):
            inputs = _dataset(f"folder:{spec}", model, split, data_dir, label_column)
        else:
            raise DataError(f"{path}: cannot tell what it holds; pass an .npy/.npz/.csv, an image folder, or a "
                            "data set as --dataset takes it (npz:PATH, csv:PATH, folder:PATH, ...).")
    else:
        inputs = _dataset(spec, model, split, data_dir, label_column)
    return inputs


def _checked(inputs: Inputs, model) -> Inputs:
    from noisyfit.predictor import PredictorError

    inputs = _resized(inputs, model)
    if inputs.columns is not None and getattr(model, "feature_names", None) is not None:
        try:
            order = model.column_order(inputs.columns)
        except PredictorError as err:
            raise PredictorError(f"{inputs.what}: {err}") from None
        if order != list(range(len(inputs.columns))):
            inputs.x = np.asarray(inputs.x)[:, order]
            moved = "its columns are in another order than the training table's: matched by name"
            inputs.note = f"{inputs.note}; {moved}" if inputs.note else f"{inputs.what}: {moved}"
    try:
        inputs.x = model.check_inputs(inputs.x)
    except PredictorError as err:
        raise PredictorError(f"{inputs.what}: {err}") from None
    return inputs


def _unlabelled_images(path: Path, model) -> Inputs:
    """One image file, or every image file under a folder (sorted paths), at the model's input size."""
    from noisyfit.data.folder import _unreadable, decode_image_files, new_image_files
    from noisyfit.data.labeled import DataError

    root, ids = new_image_files(path)
    h, w, c = model.input_shape
    if c != 3:
        raise DataError(f"{path}: image files are decoded as RGB, but this model takes {c} channel(s); pass an "
                        f"[N, {h}, {w}, {c}] uint8 .npy instead.")
    x, resized, failed = decode_image_files([root / i for i in ids], (h, w))
    if failed:
        raise _unreadable(path, [(ids[k], why) for k, why in failed], len(ids))
    note = f"{resized} of {len(ids)} image(s) resized to the model's {h}x{w}" if resized else None
    return Inputs(x, ids, None, None, str(path), note)


def _resized(inputs: Inputs, model) -> Inputs:
    """uint8 images of another height and width resized to the model's (bicubic, as folder decoding)."""
    from noisyfit.data.folder import resize_images

    x = inputs.x
    if not model.is_image or x.dtype != np.uint8 or x.ndim not in (3, 4) or len(x) == 0:
        return inputs  # check_inputs says what is wrong with anything else
    h, w, c = model.input_shape
    x4 = x[..., None] if x.ndim == 3 else x
    if x4.shape[3] != c or x4.shape[1:3] == (h, w):
        return inputs
    inputs.x = resize_images(x4, (h, w))
    inputs.note = f"{len(x)} image(s) of {x4.shape[1]}x{x4.shape[2]} resized to the model's {h}x{w}"
    return inputs


def _load_npy(path: Path) -> np.ndarray:
    from noisyfit.data.labeled import DataError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read it as an .npy array ({err}).") from None


def _choose(split: str, has_test: bool, what: str) -> str:
    from noisyfit.data.labeled import DataError

    if split == "auto":
        return "test" if has_test else "train"
    if split == "test" and not has_test:
        raise DataError(f"{what} has no test split; predict its rows with --split train.")
    return split


def _dataset(spec: str, model, split: str, data_dir, label_column: str) -> Inputs:
    from noisyfit.data.labeled import DataError
    from noisyfit.data.sources import load_dataset

    folder = spec.strip().lower().startswith("folder:")
    size = list(model.input_shape[:2]) if folder and model.is_image else None  # decoded as for training
    try:
        splits = load_dataset(spec, data_dir, label_column=label_column, image_size=size)
    except DataError as err:
        if not folder:
            raise
        raise DataError(f"{err} `noisyfit predict` reads image folders in the training layout (root/<class>/<file> "
                        "or root/<split>/<class>/<file>, 2 or more class folders); to predict unlabelled images, "
                        "put the image files directly in the folder, or pass one image file.") from None
    which = _choose(split, splits.test is not None, spec)
    data = splits.test if which == "test" else splits.train
    names = list(data.class_names)
    ids = list(data.ids) if data.ids is not None else [str(i) for i in range(len(data))]
    true = None if data.true_labels is None else [names[k] for k in data.true_labels]
    return Inputs(data.x, ids, [names[k] for k in data.labels], true, f"the {which} split of {spec}",
                  columns=getattr(data, "feature_names", None))


def _raw_npz(path: Path, split: str) -> Inputs | None:
    """An .npz without labels: its inputs and ids; None when it has labels (then it is a data set)."""
    from noisyfit.data.labeled import DataError

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if keys & {"y", "labels"}:
                return None
            which = _choose(split, "x_test" in keys, str(path))
            key = "x_test" if which == "test" else "x"
            if key not in keys:
                raise DataError(f"{path}: no array 'x' (found {sorted(keys)}); store the inputs as x.")
            x = z[key]
            id_key = "ids_test" if which == "test" else "ids"
            ids = [str(i) for i in z[id_key]] if id_key in keys else [str(i) for i in range(len(x))]
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot read it as an .npz ({err}).") from None
    return Inputs(x, ids, None, None, f"{path} ({key})")


def _raw_csv(path: Path, split: str, label_column: str) -> Inputs | None:
    """A CSV of feature rows without a label column; None when it has one (then it is a data set)."""
    from noisyfit.data.labeled import DataError
    from noisyfit.data.tabular import check_header, feature_columns, parse_column

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV file with a header row.") from None
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row and data rows.")
    header = check_header(path, rows[0])
    if label_column in header:
        return None
    body = rows[1:]
    col = {h: i for i, h in enumerate(header)}
    for k, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}: data row {k + 1} has {len(r)} fields but the header has {len(header)}; fix "
                            "the row (quote fields that contain commas).")
    ids = [r[col["id"]] for r in body] if "id" in col else [f"row{k}" for k in range(len(body))]
    if "split" in col:
        marks = [r[col["split"]].strip().lower() for r in body]
        which = _choose(split, "test" in marks, str(path))
        keep = [k for k, m in enumerate(marks) if m == which]
        body, ids = [body[k] for k in keep], [ids[k] for k in keep]
    names = feature_columns(header)  # the loader's rule: not id, split, true_label or extra_<name>
    x = np.empty((len(body), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        k, cell = parse_column([r[col[name]] for r in body], x[:, j])
        if k is not None:
            raise DataError(f"{path}: column {name!r} must be a finite number but the row of id {ids[k]!r} has "
                            f"{cell.strip()!r}.")
    return Inputs(x, ids, None, None, str(path), columns=names)
