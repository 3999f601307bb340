"""Guardrails of an audit: how good is the model behind the flags, and are the rows aligned at all?

A detector is only as good as the probabilities it reads. Two failures are silent without a check:

* the model is near chance (a pixel MLP or a tiny CNN on photos; an embedder that knows nothing of
  the classes): its "suspects" are mostly guesses;
* supplied ``pred_probs`` are not in the data set's row order (an image folder is ordered by class,
  then file name; a user's predictions are often in some other order): the rows then agree with the
  given labels only as often as independent guesses would, and confident learning reports most of the
  data as mislabelled.

A third is silent too: probabilities *in-sample*, from a model trained on these same labels. Such a model has
memorised the labels, wrong ones included, so its argmax agrees with nearly every given label with high
confidence and confident learning finds almost nothing (in a new user's trial at the prompt, not a committed
result, a CE run of 60 epochs on digits with 20% flipped labels gave 100% agreement, 0 flags, a noise estimate
of 0). It shows as agreement and mean p(given label)
both near 1.

The first two show in the agreement of the model's argmax with the *given* labels, set against what chance
gives with the same class frequencies: ``chance = sum_k p_given(k) * p_pred(k)`` (the expected agreement
of independent labels and predictions, i.e. of rows shuffled against labels), Cohen's
``kappa = (agreement - chance) / (1 - chance)`` and ``z = (agreement - chance) / sqrt(chance (1 - chance) / n)``.
Label noise lowers the agreement of even a perfect model to ``1 - noise``; 40 % symmetric noise on 10
classes still leaves kappa at 0.56, so the thresholds below only fire far below any useful model.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable

import numpy as np

from noisyfit.data.labels import DataWarning

#: a model (ours: out-of-fold, cross-fitted) whose kappa against the given labels is below this is "near chance"
NEAR_CHANCE_KAPPA = 0.2
#: supplied pred_probs with kappa below this, or agreement less than this many standard errors above
#: chance, agree with the labels "only at chance level": likely misaligned rows
MISALIGNED_KAPPA = 0.1
MISALIGNED_Z = 3.0
#: supplied pred_probs whose argmax agrees with at least this share of the given labels, with a mean p(given label)
#: of at least IN_SAMPLE_CONFIDENCE, look in-sample (a model that has memorised the labels). Out-of-sample
#: probabilities agree this well only when under about 1% of the labels are wrong (or the model repeats them).
IN_SAMPLE_AGREEMENT = 0.99
IN_SAMPLE_CONFIDENCE = 0.95


class QualityWarning(DataWarning):
    """The model behind an audit is near chance, or supplied pred_probs look misaligned."""


def _argmax_rows(pred_probs, chunk_size: int | None = None) -> np.ndarray:
    from noisyfit.detect.validation import iter_chunks

    pred = np.empty(pred_probs.shape[0], dtype=np.int64)
    for start, chunk in iter_chunks(pred_probs, chunk_size):
        pred[start:start + len(chunk)] = chunk.argmax(axis=1)
    return pred


def agreement_stats(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """Agreement of ``predicted`` with ``labels``, the chance level for the same class frequencies, kappa, z.

    Returns
    -------
    dict
        ``n``, ``agreement``, ``chance``, ``kappa``, ``z``, ``majority_share`` (the agreement of always
        predicting the commonest given label).
    """
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return {"n": 0, "agreement": None, "chance": None, "kappa": None, "z": None, "majority_share": None}
    agree = float(np.mean(labels == predicted))
    p_given = np.bincount(labels, minlength=num_classes) / n
    p_pred = np.bincount(predicted, minlength=num_classes) / n
    chance = float(np.dot(p_given, p_pred))
    kappa = (agree - chance) / (1.0 - chance) if chance < 1.0 else 0.0
    se = math.sqrt(chance * (1.0 - chance) / n) if 0.0 < chance < 1.0 else 0.0
    z = (agree - chance) / se if se > 0 else (math.inf if agree > chance else 0.0)
    return {"n": n, "agreement": agree, "chance": chance, "kappa": float(kappa), "z": float(z),
            "majority_share": float(p_given.max())}


def _usable(labels, pred_probs) -> tuple[np.ndarray, int] | None:
    """Labels as int64 and the class count, or None when the shapes are for the detector to reject."""
    shape = getattr(pred_probs, "shape", None)
    labels = np.asarray(labels)
    if shape is None or len(shape) != 2 or shape[0] != len(labels) or shape[1] < 2 or len(labels) == 0:
        return None
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= shape[1]:
        return None
    return labels.astype(np.int64), int(shape[1])


def model_quality(labels, pred_probs, *, fold: np.ndarray | None = None, true_labels=None,
                  what: str = "the model", warn: bool = True, log: Callable[[str], None] | None = None,
                  chunk_size: int | None = None) -> dict | None:
    """Quality of the model behind ``pred_probs``: agreement with the given labels, overall and per fold.

    Parameters
    ----------
    labels : array of int (N,)
        The given labels.
    pred_probs : array (N, C)
        Out-of-sample probabilities (may be memory-mapped).
    fold : array of int (N,), optional
        Which fold held each row out: adds ``per_fold``.
    true_labels : array of int (N,), optional
        Known clean labels: adds ``accuracy_true`` (overall and per fold).
    what : str
        How messages name the model.
    warn : bool
        Issue a :class:`QualityWarning` when the model is near chance (kappa < ``NEAR_CHANCE_KAPPA``).
    log : callable, optional
        Gets the human-readable lines (:func:`quality_lines`).

    Returns
    -------
    dict or None
        ``what``, the fields of :func:`agreement_stats`, ``accuracy_true``, ``per_fold`` (``fold``, ``n``,
        ``agreement_with_given``, ``chance``, ``kappa``, ``accuracy_true``), ``near_chance`` and ``warnings``
        (the messages). None when the shapes do not match (the detector reports that).
    """
    ok = _usable(labels, pred_probs)
    if ok is None:
        return None
    labels, c = ok
    pred = _argmax_rows(pred_probs, chunk_size)
    q: dict = {"what": what, **agreement_stats(labels, pred, c)}
    true = None if true_labels is None else np.asarray(true_labels, dtype=np.int64)
    q["accuracy_true"] = float(np.mean(pred == true)) if true is not None else None
    if fold is not None:
        fold = np.asarray(fold)
        rows = []
        for k in np.unique(fold[fold >= 0]).tolist():
            m = fold == k
            s = agreement_stats(labels[m], pred[m], c)
            rows.append({"fold": int(k), "n": s["n"], "agreement_with_given": s["agreement"], "chance": s["chance"],
                         "kappa": s["kappa"],
                         "accuracy_true": float(np.mean(pred[m] == true[m])) if true is not None else None})
        q["per_fold"] = rows
    q["near_chance"] = bool(q["kappa"] < NEAR_CHANCE_KAPPA)
    q["warnings"] = []
    if q["near_chance"]:
        q["warnings"].append(
            f"{what}: agreement with the given labels {q['agreement']:.1%}, near the {q['chance']:.1%} that chance "
            f"gives with these class frequencies (kappa {q['kappa']:.2f}): its flags are close to "
            "guesses. Audit with a stronger model first (an embedder: --embedder FILE; more epochs or another "
            "backbone) before acting on them.")
    _emit(q, log=log, warn=warn)
    return q


def check_pred_probs(labels, pred_probs, *, source: str = "pred_probs", true_labels=None, warn: bool = True,
                     log: Callable[[str], None] | None = None, chunk_size: int | None = None,
                     stacklevel: int = 3) -> dict | None:
    """:func:`model_quality` for supplied ``pred_probs``, with the misalignment and in-sample checks.

    Rows that agree with the given labels only at chance level (kappa < ``MISALIGNED_KAPPA`` or less than
    ``MISALIGNED_Z`` standard errors above chance) give a :class:`QualityWarning` saying the rows are
    likely not in the data set's order; ``aligned`` in the returned dict is False then. Rows that agree with
    at least ``IN_SAMPLE_AGREEMENT`` of the given labels with a mean p(given label) of at least
    ``IN_SAMPLE_CONFIDENCE`` give one saying they look in-sample; ``in_sample`` is True then.
    """
    q = model_quality(labels, pred_probs, true_labels=true_labels, what=f"pred_probs {source}",
                      warn=False, chunk_size=chunk_size)
    if q is None:
        return None
    from noisyfit.detect.rank import label_quality_scores

    q["mean_given_prob"] = float(np.mean(label_quality_scores(labels, pred_probs, chunk_size=chunk_size)))  # p(given)
    q["in_sample"] = bool(q["agreement"] >= IN_SAMPLE_AGREEMENT and q["mean_given_prob"] >= IN_SAMPLE_CONFIDENCE)
    if q["in_sample"]:
        q["warnings"].append(
            f"{source}: its argmax agrees with {q['agreement']:.1%} of the given labels, with a mean probability of "
            f"{q['mean_given_prob']:.3f} on the given label. That is what probabilities from a model trained on these "
            "same labels look like: it has memorised them, wrong ones included, so almost nothing can be flagged. "
            "Use out-of-sample probabilities: each row predicted by a model that did not train on it "
            "(scikit-learn's cross_val_predict(..., method='predict_proba'), `noisyfit audit --oof`, or "
            "`--embedder`). If they are out-of-sample already, the labels may simply be clean.")
    at_chance = q["kappa"] < MISALIGNED_KAPPA or q["z"] < MISALIGNED_Z
    q["aligned"] = not at_chance
    if at_chance:
        q["warnings"] = [(
            f"{source}: its rows agree with the given labels only at chance level ({q['agreement']:.1%}, against "
            f"{q['chance']:.1%} expected from the class frequencies alone; kappa {q['kappa']:.2f}, "
            f"{abs(q['z']):.1f} standard errors {'above' if q['z'] >= 0 else 'below'} chance). The rows are most "
            "likely not in the order of the data set's examples (an image folder is ordered by class, then file "
            "name: see the README), or the columns not in the order of its classes (column k is class_names[k]: "
            "the sorted label values unless the classes are declared, e.g. in <table>.classes.txt), or the model "
            "is no better than guessing. Write row i for example i and column k for class k (the ids of "
            "`noisyfit embed` and of issues.csv give the row order) before trusting these flags.")]
    _emit(q, log=log, warn=warn, stacklevel=stacklevel)
    return q


#: a method's own flags covering more than this share of the examples: its model is more likely too weak for the data
#: than the data that noisy (CIFAR-10N worst, 40% wrong, gives ELR 43% flags; a 3,000-photo folder trained from
#: scratch gave 52% flags for 11% wrong: benchmarks/results/mixed-folder.json)
MANY_FLAGS = 0.5
#: a method's own flags covering less than this share: its final model has fit (nearly) every given label (the demo's
#: CE on digits with 40% wrong labels flags 0.0% after 30 epochs)
FEW_FLAGS = 0.01


def run_quality(results: dict, *, log: Callable[[str], None] | None = None, warn: bool = True) -> dict:
    """What an audit can say of the training run it used (``--method``, ``--run``, the default detector): the run's
    test accuracy when it had a test split, and a warning when its own flags cover more than :data:`MANY_FLAGS`
    of the examples or less than :data:`FEW_FLAGS`. The run's probabilities are in-sample, so no agreement figure is given for them."""
    method = (results.get("method") or {}).get("name", "?")
    est = (results.get("method") or {}).get("estimated_noise_rate")
    test = (results.get("final") or {}).get("test_acc")
    q = {"what": f"the {method} run", "test_acc": test, "num_test": (results.get("data") or {}).get("num_test"),
         "estimated_noise_rate": est, "warnings": []}
    if est is not None and est > MANY_FLAGS:
        acc = f" (its test accuracy: {test:.1%})" if test is not None else ""
        q["warnings"].append(
            f"the {method} run flags {est:.0%} of the examples{acc}. Unless the data really are that noisy, its model "
            "is too weak for this data to tell wrong labels from hard ones. Audit with a stronger model first (an "
            "embedder: --embedder FILE; more epochs or another backbone) before acting on the flags.")
    if est is not None and est < FEW_FLAGS:
        q["warnings"].append(
            f"the {method} run flags {est:.1%} of the examples: its final model fits (nearly) every given label, so it "
            "has memorised the wrong ones too and cannot point at them. Unless the labels really are that clean, audit "
            "with a detector built for it (" + ("" if method == "elr" else "the default, elr; ")
            + "--oof; or an embedder: --embedder FILE).")
    if log is not None:
        log(f"model quality: {q['what']}: flags {est:.1%} of the examples" + (
            f"; test accuracy {test:.1%} on {q['num_test']:,} test examples" if test is not None and q["num_test"]
            else "") if est is not None else f"model quality: {q['what']}: no noise-rate estimate")
    if warn:
        for msg in q["warnings"]:
            warnings.warn(QualityWarning(msg), stacklevel=2)
    return q


def _emit(q: dict, *, log: Callable[[str], None] | None, warn: bool, stacklevel: int = 3) -> None:
    """Print the quality lines and issue its warnings (as :class:`QualityWarning`, by default at the caller's
    caller)."""
    if log is not None:
        for line in quality_lines(q):
            log(line)
    if warn:
        for msg in q["warnings"]:
            warnings.warn(QualityWarning(msg), stacklevel=stacklevel)


def quality_lines(q: dict | None) -> list[str]:
    """The quality as console lines (the warnings are issued separately)."""
    if not q:
        return []
    line = (f"model quality: {q['what']}: agreement with the given labels {q['agreement']:.1%} on {q['n']:,} examples "
            f"(chance {q['chance']:.1%}, kappa {q['kappa']:.2f})")
    if q.get("accuracy_true") is not None:
        line += f"; accuracy against the true labels {q['accuracy_true']:.1%}"
    lines = [line]
    if q.get("per_fold"):
        folds = ", ".join(f"{r['agreement_with_given']:.1%}" for r in q["per_fold"])
        lines.append(f"model quality: per fold, held-out agreement with the given labels {folds}")
    return lines


def audit_log(line: str) -> None:
    """``noisyfit audit: LINE`` on stderr."""
    print(f"noisyfit audit: {line}", file=sys.stderr, flush=True)
