"""Several labels per example: majority vote, Dawid–Skene consensus, annotator quality, consensus audit.

Annotations are a matrix ``[N examples, A annotators]`` of class indices with ``-1`` for "not labelled"
(or a dict of named columns, e.g. CIFAR-10N's ``LabeledData.extra_labels`` ``random1..3``).

Dawid & Skene (1979), "Maximum likelihood estimation of observer error-rates using the EM algorithm":
each annotator ``a`` has a confusion matrix ``pi_a[true j, said l]``; EM alternates the posterior of
each example's true class (E) with the class prior and the confusion matrices (M), starting from the
soft majority vote.

Backends: ``"crowdkit"`` uses crowd-kit's ``DawidSkene`` (Toloka; ``pip install 'noisyfit[crowd]'``);
``"builtin"`` is a small numpy EM here. ``"auto"`` takes crowd-kit when it is installed. Why keep our
own: crowd-kit installs cleanly next to torch 2.13 (no torch, same pandas), but it brings transformers,
pyarrow and nltk (about 300 MB) for one EM loop, and it works on long pandas frames; the built-in EM
needs only numpy, and the tests check that both give the same consensus.
Built-in details: confusion counts get ``smoothing`` pseudo-counts per cell (so an annotator never
has a zero probability of any answer); iteration stops when the mean log-likelihood per example
changes by less than ``tol``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import logsumexp

from noisyfit.detect.count import NoiseEstimate
from noisyfit.detect.issues import LabelIssues, names_or_indices
from noisyfit.detect.validation import DetectInputError, check_labels

Backend = Literal["auto", "builtin", "crowdkit"]


def annotation_matrix(annotations, *, num_classes: int | None = None) -> tuple[np.ndarray, list[str], int]:
    """``(int64 [N, A] with -1 for missing, annotator names, num_classes)`` from an array or named columns."""
    if isinstance(annotations, Mapping):
        names = [str(k) for k in annotations]
        cols = [np.asarray(v) for v in annotations.values()]
        if len({len(c) for c in cols}) > 1:
            raise DetectInputError(f"annotation columns have different lengths {[len(c) for c in cols]}; each "
                                   "column needs one entry per example (-1 where that annotator gave none).")
        arr = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
    else:
        arr = np.asarray(annotations)
        names = [f"annotator{a}" for a in range(arr.shape[1])] if arr.ndim == 2 else []
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise DetectInputError(f"annotations must be [N examples, A annotators], got shape {arr.shape}.")
    if arr.dtype.kind == "f":  # NaN marks a missing annotation in float tables
        arr = np.where(np.isfinite(arr), arr, -1)
        if np.any(arr != np.round(arr)):
            raise DetectInputError("annotations hold non-integer values; use class indices and -1 for missing.")
    elif arr.dtype.kind not in "iub":
        raise DetectInputError(f"annotations have dtype {arr.dtype}; use integer class indices, -1 for missing.")
    arr = arr.astype(np.int64)
    arr[arr < 0] = -1
    top = int(arr.max()) if arr.size else -1
    c = num_classes if num_classes is not None else max(top + 1, 2)
    if top >= c:
        raise DetectInputError(f"an annotation is {top} but num_classes={c}; labels must be 0..{c - 1}.")
    empty = np.flatnonzero((arr < 0).all(axis=1))
    if empty.size:
        raise DetectInputError(f"example {int(empty[0])} has no annotation ({empty.size} such examples); "
                               "drop unlabelled examples before computing a consensus.")
    return arr, names, int(c)


def vote_counts(ann: np.ndarray, num_classes: int) -> np.ndarray:
    """``[N, C]`` number of annotators who gave each class."""
    counts = np.zeros((len(ann), num_classes))
    for a in range(ann.shape[1]):
        ok = ann[:, a] >= 0
        counts[np.flatnonzero(ok), ann[ok, a]] += 1
    return counts


def majority_vote(annotations, *, num_classes: int | None = None, tie_break: Literal["random", "lowest"] = "random",
                  seed: int = 0) -> np.ndarray:
    """The most frequent annotation per example.

    Parameters
    ----------
    annotations : array [N, A] (-1 = missing) or dict of columns
    num_classes : int, optional
    tie_break : {"random", "lowest"}
        Among tied classes pick uniformly at random (seeded) or the lowest index.
    seed : int

    Returns
    -------
    ndarray of int, shape (N,)
    """
    ann, _, c = annotation_matrix(annotations, num_classes=num_classes)
    counts = vote_counts(ann, c)
    tied = counts == counts.max(axis=1, keepdims=True)
    if tie_break == "lowest":
        return tied.argmax(axis=1)
    if tie_break != "random":
        raise ValueError(f"tie_break={tie_break!r}; use 'random' or 'lowest'")
    noise = np.random.default_rng(seed).random(counts.shape)
    return np.where(tied, noise, -1.0).argmax(axis=1)


@dataclass
class DawidSkeneResult:
    """Consensus by Dawid–Skene.

    Attributes
    ----------
    labels : ndarray (N,)
        Consensus label (argmax posterior).
    posteriors : ndarray (N, C)
        P(true class | annotations).
    confusions : ndarray (A, C, C)
        ``confusions[a, j, l]`` = P(annotator a says l | true class j).
    priors : ndarray (C,)
    annotator_names : list of str
    backend : str
    n_iter : int
    converged : bool
    """

    labels: np.ndarray
    posteriors: np.ndarray
    confusions: np.ndarray
    priors: np.ndarray
    annotator_names: list[str]
    backend: str
    n_iter: int
    converged: bool
    history: list[float] = field(default_factory=list)

    @property
    def annotator_accuracy(self) -> np.ndarray:
        """Estimated accuracy per annotator: ``sum_j prior_j * confusions[a, j, j]``."""
        return np.einsum("j,ajj->a", self.priors, self.confusions)


def _builtin_em(ann: np.ndarray, c: int, max_iter: int, tol: float, smoothing: float):
    n, a_count = ann.shape
    post = vote_counts(ann, c)
    post /= post.sum(axis=1, keepdims=True)
    rows = [np.flatnonzero(ann[:, a] >= 0) for a in range(a_count)]
    said = [ann[r, a] for a, r in enumerate(rows)]
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        # M-step: class prior and each annotator's confusion matrix from the current posteriors
        priors = post.mean(axis=0)
        conf = np.full((a_count, c, c), smoothing)
        for a in range(a_count):
            np.add.at(conf[a].T, said[a], post[rows[a]])  # conf[a][:, l] += posterior of examples where a said l
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step: log P(true j) + sum over annotators of log P(what they said | j)
        log_post = np.broadcast_to(np.log(np.maximum(priors, 1e-300)), (n, c)).copy()
        log_conf = np.log(conf)
        for a in range(a_count):
            log_post[rows[a]] += log_conf[a][:, said[a]].T
        norm = logsumexp(log_post, axis=1, keepdims=True)
        post = np.exp(log_post - norm)
        history.append(float(norm.mean()))
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return post, conf, post.mean(axis=0), it, converged, history


def _crowdkit_em(ann: np.ndarray, c: int, max_iter: int, tol: float):
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError as err:
        raise ImportError("backend='crowdkit' needs crowd-kit: pip install 'noisyfit[crowd]' (or use "
                          "backend='builtin')") from err
    task, worker = np.nonzero(ann >= 0)
    df = pd.DataFrame({"task": task, "worker": worker, "label": ann[task, worker]})
    with warnings.catch_warnings():  # crowd-kit 1.4 uses pandas APIs that pandas 3 deprecates; not ours to fix
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        ds = DawidSkene(n_iter=max_iter, tol=tol).fit(df)
    post = np.array(ds.probas_.reindex(index=range(len(ann)), columns=range(c), fill_value=0.0), dtype=np.float64)
    post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
    conf = np.zeros((ann.shape[1], c, c))
    errors = ds.errors_  # rows (worker, said label), columns true label: P(said | true)
    for (w, said), row in errors.iterrows():
        for true, p in row.items():
            conf[int(w), int(true), int(said)] = p
    conf /= np.maximum(conf.sum(axis=2, keepdims=True), 1e-300)
    priors = np.array(ds.priors_.reindex(range(c), fill_value=0.0), dtype=np.float64)
    history = [float(v) for v in getattr(ds, "loss_history_", [])]
    return post, conf, priors, len(history), len(history) < max_iter, history


def dawid_skene(annotations, *, num_classes: int | None = None, max_iter: int = 100, tol: float = 1e-6,
                smoothing: float = 0.01, backend: Backend = "auto") -> DawidSkeneResult:
    """Dawid–Skene consensus labels, posteriors and per-annotator confusion matrices.

    Parameters
    ----------
    annotations : array [N, A] (-1 = missing) or dict of named columns
    num_classes : int, optional
    max_iter : int
    tol : float
        Stop when the mean log-likelihood per example changes by less than this (crowd-kit: its own
        evidence lower bound criterion).
    smoothing : float
        Pseudo-count per confusion cell (built-in backend).
    backend : {"auto", "builtin", "crowdkit"}

    Returns
    -------
    DawidSkeneResult
    """
    ann, names, c = annotation_matrix(annotations, num_classes=num_classes)
    if backend == "auto":
        try:
            import crowdkit  # noqa: F401
            backend = "crowdkit"
        except ImportError:
            backend = "builtin"
    if backend == "builtin":
        post, conf, priors, it, conv, hist = _builtin_em(ann, c, max_iter, tol, smoothing)
    elif backend == "crowdkit":
        post, conf, priors, it, conv, hist = _crowdkit_em(ann, c, max_iter, tol)
    else:
        raise ValueError(f"backend={backend!r}; use 'auto', 'builtin' or 'crowdkit'")
    return DawidSkeneResult(labels=post.argmax(axis=1), posteriors=post, confusions=conf, priors=priors,
                            annotator_names=names, backend=backend, n_iter=it, converged=conv, history=hist)


def annotator_quality(annotations, consensus, *, num_classes: int | None = None,
                      ds: DawidSkeneResult | None = None, true_labels=None) -> list[dict]:
    """Per annotator: how many examples, agreement with the consensus, DS-estimated and true accuracy.

    Returns
    -------
    list of dict
        ``annotator, num_labelled, agreement_with_consensus, estimated_accuracy`` (from ``ds``, else None),
        ``true_accuracy`` (when ``true_labels`` are given, else None) and, with ``ds``, ``estimated_confusion``:
        its rows P(the annotator says l | true class j), rounded to 3 decimals, where a systematic swap (3 for 8)
        shows that an accuracy alone hides.
    """
    ann, names, c = annotation_matrix(annotations, num_classes=num_classes)
    consensus = check_labels(consensus, c, name="consensus")
    truth = check_labels(true_labels, c, name="true_labels") if true_labels is not None else None
    est = ds.annotator_accuracy if ds is not None else None
    out = []
    for a, name in enumerate(names):
        ok = ann[:, a] >= 0
        out.append({"annotator": name, "num_labelled": int(ok.sum()),
                    "agreement_with_consensus": float(np.mean(ann[ok, a] == consensus[ok])) if ok.any() else None,
                    "estimated_accuracy": float(est[a]) if est is not None else None,
                    "true_accuracy": float(np.mean(ann[ok, a] == truth[ok])) if truth is not None and ok.any()
                    else None})
        if ds is not None:
            out[-1]["estimated_confusion"] = np.round(ds.confusions[a], 3).tolist()
    return out


def consensus_issues(annotations, *, given=None, method: Literal["dawid_skene", "majority_vote"] = "dawid_skene",
                     class_names: Sequence[str] | None = None, true_labels=None, ids: Sequence[str] | None = None,
                     backend: Backend = "auto", seed: int = 0) -> LabelIssues:
    """Audit a label column against the annotators' consensus.

    Parameters
    ----------
    annotations : array [N, A] or dict of columns
    given : array-like of int, optional
        The labels to audit (e.g. CIFAR-10N's ``worst``); default: the majority vote.
    method : {"dawid_skene", "majority_vote"}
        The consensus; Dawid–Skene gives posteriors, majority vote the vote share (a tie that includes the
        given label keeps it: only a strict majority against the given label flags it).
    class_names, ids, true_labels
        For reasons, files and detection metrics.
    backend : {"auto", "builtin", "crowdkit"}
    seed : int
        Tie-breaking of the majority vote.

    Returns
    -------
    LabelIssues
        Flag = consensus differs from the given label; score = the consensus probability of the given
        label (posterior or vote share); suggested = the consensus, except for ``review`` items (not flagged, their
        given label given by at most half of their annotators: contested, for a person to look at), whose
        suggestion is the most probable other label;
        ``info`` holds per-annotator quality and, with ``true_labels``, the consensus accuracies.
    """
    ann, names, c = annotation_matrix(annotations, num_classes=len(class_names) if class_names else None)
    cls = names_or_indices(class_names, c)
    mv = majority_vote(ann, num_classes=c, seed=seed)
    given = mv if given is None else check_labels(given, c, name="given")
    if len(given) != len(ann):
        raise DetectInputError(f"given has {len(given)} labels for {len(ann)} annotated examples.")
    rows = np.arange(len(given))
    counts = vote_counts(ann, c)
    given_votes, num_votes = counts[rows, given], counts.sum(axis=1)
    ds = None
    if method == "dawid_skene":
        ds = dawid_skene(ann, num_classes=c, backend=backend)
        probs, consensus = ds.posteriors, ds.labels
    elif method == "majority_vote":
        # a tie that includes the given label does not contradict it: the given label stays the consensus (a tie
        # broken at random had flagged and relabelled such items, most of them rightly labelled: a user trial)
        tie_kept = given_votes == counts.max(axis=1)
        probs, consensus = counts / num_votes[:, None], np.where(tie_kept, given, mv)
    else:
        raise ValueError(f"method={method!r}; use 'dawid_skene' or 'majority_vote'")
    scores = probs[rows, given]
    flags = consensus != given
    what = "Dawid-Skene posterior" if ds is not None else "vote share"
    # kept but contested: the given label stays (consensus), yet no majority of the item's annotators gave it
    # (a 1-1-1 split, a 1-1 tie, or Dawid-Skene trusting one annotator over two); a labelling team reviews these,
    # which the flags alone never show (a user trial)
    review = ~flags & (given_votes <= num_votes / 2)
    # a review item's suggestion is the best alternative to the kept label (the given label repeated had told the
    # reviewer nothing); flagged items keep the consensus, and cleaning reads only those
    others = np.where(np.arange(c)[None, :] == given[:, None], -np.inf, probs)
    alternative = others.argmax(axis=1)  # ties: the lowest class index
    suggested = np.where(review, alternative, consensus)
    reasons = {}

    def votes(i: int) -> str:
        return ", ".join(f"{names[a]}={cls[ann[i, a]]}" for a in range(ann.shape[1]) if ann[i, a] >= 0)

    for i in np.flatnonzero(flags).tolist():
        reasons[i] = (f"{method}: consensus {cls[consensus[i]]} ({what} {probs[i, consensus[i]]:.3f}) != given "
                      f"{cls[given[i]]} ({scores[i]:.3f}); votes: {votes(i)}")
    for i in np.flatnonzero(review).tolist():
        reasons[i] = (f"kept {cls[given[i]]} ({what} {scores[i]:.3f}), but only {int(given_votes[i])} of "
                      f"{int(num_votes[i])} annotators gave it; the best alternative {cls[alternative[i]]} "
                      f"({probs[i, alternative[i]]:.3f}); votes: {votes(i)}")
    # soft joint of (given, consensus posterior): the consensus as the estimate of the true label
    joint = np.zeros((c, c))
    np.add.at(joint, given, probs)
    noise = NoiseEstimate.from_joint(joint, method=f"{what} of the consensus against the given labels",
                                     num_label_issues=int(flags.sum()))
    named = {name: ann[:, a] for a, name in enumerate(names)}
    info = {"consensus": method, "annotators": annotator_quality(named, consensus, num_classes=c, ds=ds,
                                                                   true_labels=true_labels)}
    if ds is not None:
        info.update(backend=ds.backend, n_iter=ds.n_iter, converged=ds.converged)
    if true_labels is not None:
        truth = check_labels(true_labels, c, name="true_labels")
        info["consensus_accuracy"] = {"majority_vote": float(np.mean(mv == truth)),
                                      method: float(np.mean(consensus == truth))}
    return LabelIssues(is_issue=flags, given=given, suggested=suggested, scores=scores, reasons=reasons,
                       class_names=cls, detector=f"{method.replace('_', ' ')} consensus of {len(names)} annotators",
                       rule=f"the {method.replace('_', ' ')} consensus differs from the given label",
                       score_name=f"{what} of the given label", noise=noise,
                       ids=list(ids) if ids is not None else None, true_labels=true_labels, info=info,
                       suggested_confidence=probs[rows, suggested], review=review,
                       review_rule="the consensus keeps the given label, but at most half of the item's annotators "
                                   "gave it")
