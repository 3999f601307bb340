"""The embedder of a model trained on embeddings: new images pass through it before the model predicts.

A run trained on an embeddings file of ``noisyfit embed`` (``noisyfit train --dataset npz:emb.npz``) takes
feature rows, but its users have images. The embeddings file records its embedder (file, input size,
normalisation, interpolation) and the size the images were decoded to; the run keeps that record in its
``model.pt`` (``Predictor.input_source``). :func:`embedder_for` loads that embedder with those settings, so new
images become rows the way the training rows were made::

    model = load_predictor("runs/gce_emb")
    embed = embedder_for(model)                        # the recorded backbone.pt2, its recorded settings
    probs = model.predict_proba(embed(images))         # images: uint8 [N, H, W, C] of one size

``noisyfit predict RUN IMAGES`` does this itself (``--embedder FILE`` names another file, e.g. after a move).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from noisyfit.embed.models import Embedder, EmbedderError, EmbedSettings, load_embedder


def recorded_embedder(model) -> dict:
    """The embedder record of ``model`` (a :class:`~noisyfit.predictor.Predictor`), {} when it has none."""
    return dict((getattr(model, "input_source", None) or {}).get("embedder") or {})


def decode_size(model, embedder: Embedder) -> tuple[int, int] | None:
    """The (height, width) new images are decoded to before the embedder: the size the training images were
    decoded to when the embeddings file recorded it, else the embedder's input size (None: neither is known)."""
    size = (getattr(model, "input_source", None) or {}).get("image_size")
    if size:
        return int(size[0]), int(size[1])
    return tuple(embedder.input_size) if embedder.input_size else None


#: the embedder settings the training rows were made with, compared with those of a later embedding
COMPARED_SETTINGS = ("input_size", "mean", "std", "interpolation")


def settings_differ(recorded: dict, other: dict) -> list[str]:
    """The settings (of :data:`COMPARED_SETTINGS`, as words) that ``recorded`` holds and ``other`` does not share:
    two embedders' ``describe()`` records, or an embeddings file's and a run's."""
    return [k.replace("_", " ") for k in COMPARED_SETTINGS
            if recorded.get(k) is not None and recorded[k] != other.get(k)]


def _find_recorded(rec: dict) -> str:
    """The recorded embedder file: where it was (absolute), else its path as given then, taken from the current
    folder (a project copied or moved whole keeps its relative layout). EmbedderError lists both."""
    places = []
    for p in (rec.get("resolved_path"), rec.get("path")):
        if p and p not in places:
            places.append(p)
    for p in places:
        if Path(p).expanduser().exists():
            return p
    raise EmbedderError(f"the embedder that made this model's training rows is not there any more (looked for "
                        f"{' and '.join(places)}): give its new location (--embedder FILE; in Python "
                        "embedder_for(model, path)).")


def embedder_for(model, path: str | Path | None = None, settings: EmbedSettings | None = None, *,
                 checkpoint: str | None = None, network: int | None = None) -> Embedder:
    """The embedder that turns images into the feature rows ``model`` takes.

    Parameters
    ----------
    model : Predictor
        A model trained on feature rows (``model.is_image`` False).
    path : path, optional
        The embedder file; default: the one that made the training rows, as recorded.
    settings : EmbedSettings, optional
        Input size, normalisation, interpolation, batch size, device. Fields left at None take the recorded values
        (those the training rows were made with), then the file's own. The caller's object is not changed.
    checkpoint, network : optional
        A run folder as embedder: which weights and which network; None: as recorded (else ``auto`` and 0).

    Raises
    ------
    EmbedderError
        The model takes images; no file given and none recorded; the recorded file is gone.
    """
    if getattr(model, "is_image", False):
        raise EmbedderError("this model takes images itself; it needs no embedder")
    rec = recorded_embedder(model)
    if path is not None:
        file = path
    elif not rec:
        raise EmbedderError("this model's training rows do not say which model embedded them (they were not read "
                            "from an embeddings file of `noisyfit embed`): give the embedder file "
                            "(--embedder FILE; in Python embedder_for(model, path)).")
    else:
        file = _find_recorded(rec)
    s = dataclasses.replace(settings) if settings is not None else EmbedSettings()
    if s.input_size is None and rec.get("input_size"):
        s.input_size = tuple(rec["input_size"])
    for name in ("mean", "std", "interpolation"):  # as the training rows were made ("data" was resolved then)
        if getattr(s, name) is None and rec.get(name) is not None:
            setattr(s, name, rec[name])
    kw = {}
    if rec.get("format") == "run" or checkpoint is not None or network is not None:  # a run folder as embedder
        recorded_ckpt = rec.get("checkpoint") if path is None and rec.get("checkpoint") in ("last", "best") else None
        kw["checkpoint"] = checkpoint or recorded_ckpt or "auto"
        recorded_net = rec.get("network_index") if path is None else None
        kw["network"] = int(network if network is not None else recorded_net or 0)
    return load_embedder(file, s, **kw)
