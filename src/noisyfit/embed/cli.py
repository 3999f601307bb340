"""Command-line glue: ``noisyfit audit --embedder`` (embed, cross-fit, check quality).

``noisyfit audit`` adds :func:`noisyfit.commands.embed_options.add_audit_options` when it builds its parser and calls
:func:`audit_on_embeddings` when ``--embedder`` is given; the detectors and the report stay the audit's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from noisyfit.data.labeled import LabeledData
from noisyfit.detect.crossfit import KNN_K, cross_fit, neighbour_metric, scale_features
from noisyfit.detect.neighbors import explain_votes, knn_graph, neighbours_of
from noisyfit.detect.guardrails import audit_log, model_quality
from noisyfit.embed.extract import Embeddings, embed_data, load_embeddings
from noisyfit.embed.models import EmbedderError, EmbedSettings, load_embedder
from noisyfit.commands.embed_options import add_audit_options, add_settings_options  # noqa: F401  (their old home)


def settings_from_args(args) -> EmbedSettings:
    return EmbedSettings(input_size=args.input_size, mean=args.mean, std=args.std,
                         batch_size=args.embed_batch_size, device=getattr(args, "device", None) or "cpu")


def _fingerprint(path: Path, settings: EmbedSettings, args, data: LabeledData) -> str:
    """What the embeddings depend on: the model file (size, mtime), the settings, the examples' ids."""
    h = hashlib.sha1()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([settings.input_size, settings.mean, settings.std, args.checkpoint, args.network],
                        default=str).encode())
    h.update("\n".join(data.ids if data.ids is not None else [str(len(data))]).encode())
    h.update(str(data.x.shape).encode())
    return h.hexdigest()[:16]


def _embed(args, out: Path, data: LabeledData, progress: bool, log) -> tuple[Embeddings, str]:
    """Embeddings of DATA with the --embedder model; reused from OUT/embeddings.npz under --resume."""
    path = Path(args.embedder).expanduser()
    settings = settings_from_args(args)
    cache = out / "embeddings.npz"
    key = _fingerprint(path, settings, args, data) if path.exists() else None
    if getattr(args, "resume", False) and key and cache.is_file():
        try:
            emb = load_embeddings(cache)
            if emb.info.get("fingerprint") == key:
                log(f"embeddings: reusing {cache} (same model, settings and examples)")
                return emb, str(cache)
        except EmbedderError:
            pass
    embedder = load_embedder(path, settings, checkpoint=args.checkpoint, network=args.network)
    d = embedder.describe()
    log(f"embedding {len(data):,} examples with {d['format']} model {path} (input "
        f"{'x'.join(map(str, d['input_size'])) if d['input_size'] else 'as stored'}, batch {embedder.batch_size})")
    emb = embed_data(embedder, data, progress=progress, log=log)
    emb.info["fingerprint"] = key
    emb.save(cache)
    log(f"embeddings: {len(emb):,} x {emb.dim} in {emb.info['seconds']:.1f} s, written to {cache}")
    return emb, str(cache)


def _from_file(args, data: LabeledData | None) -> tuple[Embeddings, LabeledData]:
    """An embeddings .npz, checked against DATA when DATA is given; DATA's labels win (after --noise)."""
    emb = load_embeddings(args.embedder)
    if data is None:
        if getattr(args, "noise", None) or getattr(args, "noisy_labels", None):
            raise EmbedderError("--noise / --noisy-labels change DATA's labels: give DATA too "
                                "(`noisyfit audit DATA --embedder emb.npz ...`).")
        # the file is the data set: its rows are the examples (its ids name them)
        data = LabeledData(x=emb.x, labels=emb.labels, class_names=emb.class_names, ids=emb.ids,
                           true_labels=emb.true_labels, name=Path(args.embedder).stem)
        return emb, data
    if len(emb) != len(data):
        raise EmbedderError(f"{args.embedder}: {len(emb):,} rows, but {data.name} has {len(data):,} training examples; "
                            "embed this data set (`noisyfit embed DATA --model FILE`).")
    if data.ids is not None and list(emb.ids) != list(data.ids):
        k = next(i for i, (a, b) in enumerate(zip(emb.ids, data.ids)) if a != b)
        raise EmbedderError(f"{args.embedder}: row {k} is {emb.ids[k]!r}, but example {k} of {data.name} is "
                            f"{data.ids[k]!r}: the embeddings are not in the data set's row order (or are of another "
                            "data set). Embed it again with `noisyfit embed`.")
    if list(emb.class_names) != list(data.class_names):
        raise EmbedderError(f"{args.embedder}: classes {emb.class_names} differ from {data.name}'s {data.class_names}.")
    return emb, data


def audit_on_embeddings(args, out: Path, load_data: Callable[[], LabeledData] | None, *,
                        progress: bool = True, log: Callable[[str], None] = audit_log) -> SimpleNamespace:
    """``noisyfit audit --embedder``: embeddings (a model's, or a file's), cross-fitted pred_probs, quality.

    Returns
    -------
    SimpleNamespace
        ``train`` (the examples, for the report), ``pred_probs``, ``labels``, ``true_labels``, ``index``,
        ``ids``, ``mode`` (one line for the report) and ``summary`` (for summary.json: ``embedder``,
        ``cross_fit``, ``model_quality``). OUT gets ``embeddings.npz`` (a model's) and ``pred_probs.npz``
        (``pred_probs``, ``ids``, ``labels``, ``fold``, ``index``; usable as ``--pred-probs``).
    """
    t0 = time.time()
    path = Path(args.embedder).expanduser()
    if not path.exists():  # before the data are loaded: decoding a folder can take minutes
        raise EmbedderError(f"model {path}: no such file or folder; --embedder takes a model file (.pt2, .onnx, "
                            "TorchScript), a noisyfit run folder, or the .npz of `noisyfit embed`.")
    data = load_data() if load_data is not None else None
    if path.suffix.lower() == ".npz":
        emb, data = _from_file(args, data)
        source, written = "embeddings file", str(path)
    else:
        if data is None:
            raise EmbedderError("--embedder MODEL needs DATA, the examples to embed (e.g. `noisyfit audit "
                                "folder:photos --embedder backbone.pt2 --out audit/`).")
        emb, written = _embed(args, out, data, progress, log)
        source = "model"
    labels, true = data.labels, data.true_labels
    ids = list(data.ids) if data.ids is not None else list(emb.ids)
    index = np.arange(len(labels))
    seed = args.seed if getattr(args, "seed", None) is not None else 0
    k = args.knn_k if getattr(args, "knn_k", None) is not None else min(KNN_K, len(labels) - 1)
    if not 1 <= k < len(labels):
        raise EmbedderError(f"--knn-k {k}: at least 1 and at most {len(labels) - 1}, the other examples of the "
                            f"{len(labels):,}.")
    xs = scale_features(emb.x, "global")  # as the classifiers see them: centred, one common scale
    metric = neighbour_metric(xs)
    neighbours = {"k": k, "metric": metric, "scaling": "global",
                  "use": "each flag's reason names how its nearest neighbours are labelled"}
    if metric != "cosine":
        log("note: some centred embedding rows are all zeros; neighbours by euclidean distance")
    graph = None
    if args.classifier == "knn":
        tg = time.time()
        graph = knn_graph(xs, k, metric=metric)
        neighbours["graph_seconds"] = round(time.time() - tg, 2)
    cf = cross_fit(emb.x, labels, num_classes=data.num_classes, folds=args.folds, classifier=args.classifier,
                   seed=seed, C=args.logreg_c, true_labels=true, k=k, graph=graph, log=log)

    def explain(rows, class_names) -> tuple[dict[int, str], dict[int, list[int]]]:
        """The neighbour sentence of each of ``rows`` (the flagged ones), and its neighbours' rows nearest first:
        from the knn graph, else a search of those rows' neighbours only."""
        if graph is not None:
            return (explain_votes(graph, labels, rows, class_names),
                    {int(i): graph.indices[i].tolist() for i in rows})
        g = neighbours_of(xs, rows, k, metric=metric)
        return (explain_votes(g, labels, rows, class_names, graph_rows=True),
                {int(i): g.indices[j].tolist() for j, i in enumerate(rows)})

    np.savez(out / "pred_probs.npz", pred_probs=cf.pred_probs, ids=np.array(ids, dtype=str), labels=labels,
             fold=cf.fold, index=index)
    what = (f"the votes of {k} nearest neighbours on {emb.dim}-d embeddings" if args.classifier == "knn"
            else f"cross-fitted {args.classifier} on {emb.dim}-d embeddings")
    quality = model_quality(labels, cf.pred_probs, fold=cf.fold if args.classifier != "knn" else None,
                            true_labels=true, what=what, log=log)
    embedder_info = {**emb.info.get("embedder", {}), "source": source, "embeddings": written,
                     "embed_seconds": emb.info.get("seconds"), "dim": emb.dim}
    summary = {"embedder": embedder_info,
               "cross_fit": {**cf.info, "seconds": cf.seconds, "pred_probs": "pred_probs.npz"},
               "model_quality": quality, "neighbours": neighbours, "embedding_audit_seconds": time.time() - t0}
    mode = (f"knn votes on embeddings ({path.name}), {k} neighbours" if args.classifier == "knn"
            else f"{args.classifier} cross-fitted on embeddings ({path.name}), {args.folds} folds")
    return SimpleNamespace(train=data, pred_probs=cf.pred_probs, labels=labels, true_labels=true, index=index,
                           ids=ids, mode=mode, summary=summary, explain=explain)

