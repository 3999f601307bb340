"""Embeddings from model files, for audits that do not train a network: no network access needed.

::

    from noisyfit.embed import load_embedder, embed_data, export_backbone
    embedder = load_embedder("backbone.pt2")                    # torch.export, TorchScript, ONNX or a run folder
    emb = embed_data(embedder, load_dataset("folder:photos").train)
    emb.save("emb.npz")                                          # x, y, ids, class_names (also an npz: data set)
    export_backbone("runs/x", "backbone.onnx")                   # a finished run's backbone as a file
    embedder_for(load_predictor("runs/on_emb"))(images)          # new images as a run trained on emb.npz takes them

The audit on embeddings (K-fold classifiers, then confident learning) is
:func:`noisyfit.detect.crossfit.audit_embeddings`; on the command line ``noisyfit embed`` and
``noisyfit audit DATA --embedder FILE``.
"""

from noisyfit.embed.extract import Embeddings, embed_data, embed_rows, load_embeddings
from noisyfit.embed.for_model import embedder_for
from noisyfit.embed.models import (FORMATS, IMAGENET_MEAN, IMAGENET_STD, Embedder, EmbedderError, EmbedSettings,
                                   detect_format, load_embedder, save_embedder)
from noisyfit.embed.runs import FeatureExtractor, export_backbone, load_run_backbone, run_embedder

__all__ = [
    "FORMATS", "IMAGENET_MEAN", "IMAGENET_STD", "Embedder", "EmbedderError", "EmbedSettings", "Embeddings",
    "FeatureExtractor", "detect_format", "embed_data", "embed_rows", "embedder_for", "export_backbone",
    "load_embedder", "load_embeddings",
    "load_run_backbone", "run_embedder", "save_embedder",
]
