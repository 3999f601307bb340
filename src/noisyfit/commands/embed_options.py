"""The embedder options of ``noisyfit audit`` and ``noisyfit embed``, kept free of torch and the detectors so
that building the command-line parser (``noisyfit --help``) imports neither."""

from __future__ import annotations

#: the classifiers ``noisyfit.detect.crossfit.cross_fit`` takes (a test keeps the two lists equal)
CLASSIFIER_CHOICES = ("logreg", "mlp", "knn")


def add_settings_options(g, *, batch_flag: str = "--batch-size", device: bool = True) -> None:
    """``--input-size``, ``--mean``, ``--std``, the batch size, ``--checkpoint``, ``--network`` (and ``--device``)."""
    g.add_argument("--input-size", metavar="N|H,W",
                   help="image size the embedder takes (images are resized with F.interpolate); default: the "
                        "model file's, else its static input shape, else the data's own size")
    g.add_argument("--mean", metavar="M", help="per-channel mean in [0, 1] pixel units (e.g. 0.485,0.456,0.406), or "
                                               "imagenet, data (the images' own) or none; default: the model file's, "
                                               "else imagenet")
    g.add_argument("--std", metavar="S", help="per-channel std, as --mean (a model taking 0..255 pixels: --mean 0 "
                                              "--std 0.00392157)")
    g.add_argument(batch_flag, dest="embed_batch_size", type=int, default=256, metavar="N",
                   help="examples per forward pass of the embedder (default 256)")
    g.add_argument("--checkpoint", choices=("auto", "last", "best"), default="auto",
                   help="a run folder as embedder: auto (default) = the weights `predict` uses (best_model.pt "
                        "when the run selected an epoch, else the last), last = checkpoint.pt, best = best_model.pt")
    g.add_argument("--network", type=int, default=0,
                   help="a run folder of a two-network method: which network's backbone (default 0)")
    if device:
        g.add_argument("--device", default="cpu", help="cpu or cuda, for torch models (default cpu)")


def _c_value(text: str):
    """``--logreg-c``: a positive number or ``auto``."""
    import argparse

    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number or 'auto'")
    return value


def add_audit_options(p, src) -> None:
    """``--embedder`` (in the audit's group of evidence sources) and its settings."""
    src.add_argument("--embedder", metavar="FILE",
                     help="embed DATA with this model (a noisyfit run folder, a torch.export .pt2, TorchScript, "
                          "an .onnx) or read the embeddings of `noisyfit embed` (.npz); cross-fitted classifiers on "
                          "the embeddings give the out-of-fold pred_probs (seconds to minutes on a CPU)")
    g = p.add_argument_group("embedder (--embedder)")
    add_settings_options(g, batch_flag="--embed-batch-size", device=False)
    g.add_argument("--classifier", choices=CLASSIFIER_CHOICES, default="logreg",
                   help="classifier cross-fitted on the embeddings (--folds folds): logistic regression (default) "
                        "or a one-hidden-layer MLP; or knn: no fitting, each example's --knn-k nearest neighbours "
                        "vote with their labels (never itself)")
    g.add_argument("--knn-k", type=int, default=None, metavar="K",
                   help="neighbours of --classifier knn, and of the neighbour sentence in each flag's reason "
                        "(default 10)")
    g.add_argument("--logreg-c", type=_c_value, default="auto", metavar="C",
                   help="L2 strength of the logistic regression (smaller = stronger), or 'auto' (default): chosen "
                        "in each training split by the given labels' log-loss on inner folds")
