"""Out-of-fold probabilities for multi-label data: cross-fitted classifiers on features or embeddings.

The multi-label audit (:func:`~noisyfit.detect.multilabel_issues`) needs, for every example and class, a
probability from a model that never saw that example's labels. This module produces them the way
:mod:`noisyfit.detect.crossfit` does for one label per example, so a user with a feature table or the embeddings
of a pretrained network needs no training loop of their own:

* **Folds.** Shuffled K-fold splits, stratified over all classes at once by *iterative stratification*
  (Sechidis, Tsoumakas and Vlahavas, "On the stratification of multi-label data", ECML PKDD 2011): the class with
  the fewest examples left is dealt first, each of its examples to the fold that still lacks most of that class.
  Plain K-fold can put every example of a rare class in one fold, leaving its training split none.
* **Classifiers** (scikit-learn, behind the same scaling as the single-label cross-fit, ``global`` by default):
  ``logreg`` (default), one binary logistic regression per class (one-vs-rest, as cleanlab's multi-label
  tutorial does) with its L2 penalty ``C`` chosen per class and per training split on inner folds by the
  log-loss of the *given* bits (``C="auto"``, the grid :data:`~noisyfit.detect.crossfit.AUTO_CS`), or a fixed
  ``C``; ``mlp``, one network of 256 ReLU units with one sigmoid output per class (scikit-learn's
  ``MLPClassifier`` on the label matrix), which can share what the classes have in common; or ``knn``, no fitting
  and no folds: the probability of a class is the share of the example's ``k`` nearest neighbours (never itself)
  that have it (:mod:`noisyfit.detect.neighbors`; cosine after the same scaling).
* **Classes too rare to fit.** A class with fewer than ``folds`` examples that have it (or that lack it), or
  whose training split of some fold holds none with it (or none without it), cannot be given out-of-fold
  probabilities worth auditing (:func:`unfittable_classes`; for ``knn``, fewer than :data:`KNN_MIN_EXAMPLES`): it
  is reported in ``info["skipped"]`` and its column is NaN, not fitted (:func:`audit_multilabel_features` leaves it
  unaudited and says so), never replaced by a constant.

What it measures is in ``benchmarks/audit_multilabel.py`` (``benchmarks/AUDIT_MULTILABEL.md``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from noisyfit.detect.crossfit import (AUTO_CS, AUTO_FOLDS, KNN_K, CrossFit, make_classifier, neighbour_metric,
                                     scale_features)
from noisyfit.detect.multilabel import label_matrix
from noisyfit.detect.validation import DetectInputError

CLASSIFIERS = ("logreg", "mlp", "knn")


def multilabel_folds(given, folds: int = 5, *, seed: int = 0) -> np.ndarray:
    """The fold (``0..folds-1``) of every example, stratified over all classes by iterative stratification.

    Each fold's share of every class and of the examples is as close to ``1 / folds`` as the dealing allows:
    the class with the fewest unassigned examples goes first (ties: one at random); each of its examples goes to
    the fold that wants most of that class (ties: the fold that wants most examples, then a random one).
    Examples without any class are dealt last, to the folds that want most examples. Only the examples *with* a
    class are stratified: a rare class's absence, or a very common class, can still miss a training split
    (:func:`unfittable_classes` checks that after the dealing).
    """
    y = label_matrix(given)
    n, k = y.shape
    if not 2 <= folds <= n:
        raise DetectInputError(f"folds must be between 2 and the number of examples ({n}), got {folds}")
    rng = np.random.default_rng(seed)
    want_class = np.tile(y.sum(axis=0) / folds, (folds, 1)).astype(np.float64)  # [folds, K]
    want_size = np.full(folds, n / folds)
    fold = np.full(n, -1, dtype=np.int64)
    left = y.copy()
    order = rng.permutation(n)  # a random order among the examples of one class

    def deal(i: int, scores: np.ndarray) -> None:
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:  # tie: the fold that wants most examples, then at random
            sizes = want_size[best]
            best = best[sizes == sizes.max()]
        f = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
        fold[i] = f
        want_class[f] -= y[i]
        want_size[f] -= 1
        left[i] = False

    while left.any():
        counts = left.sum(axis=0)
        rarest = np.flatnonzero(counts == counts[counts > 0].min())
        c = int(rarest[rng.integers(len(rarest))])  # classes tied for fewest: one at random, as the paper has it
        for i in order[left[order, c]]:
            deal(int(i), want_class[:, c])
    for i in order[fold[order] < 0]:  # examples with no class
        deal(int(i), want_size)
    return fold


#: a class needs at least this many examples with it and without it for the knn classifier's vote
KNN_MIN_EXAMPLES = 5


def too_rare_classes(given: np.ndarray, minimum: int, why: str) -> dict[int, str]:
    """The classes with fewer than ``minimum`` examples with it, or without it: ``{class: "<count> example(s)
    with|without it, <why>"}`` (the side that falls short)."""
    n, pos = len(given), given.sum(axis=0)
    return {c: (f"{int(pos[c])} example(s) with it" if pos[c] < minimum else f"{int(n - pos[c])} example(s) without it")
            + f", {why}" for c in range(given.shape[1]) if min(pos[c], n - pos[c]) < minimum}


def unfittable_classes(given: np.ndarray, fold: np.ndarray, folds: int) -> dict[int, str]:
    """The classes that cannot be given out-of-fold probabilities worth auditing, each with the reason: fewer than
    ``folds`` examples with (or without) it, or a training split (all folds but one) without any example with (or
    without) it, which the stratification does not rule out."""
    out = too_rare_classes(given, folds, f"fewer than the {folds} folds: too few to fit out of fold")
    for c in range(given.shape[1]):
        if c in out:
            continue
        for f in range(folds):
            tr = given[fold != f, c]
            if tr.all() or not tr.any():
                out[c] = (f"the training folds of fold {f + 1} hold no example {'without' if tr.all() else 'with'} "
                          "it: too few to fit out of fold")
                break
    return out


def _check_features(x: np.ndarray, n: int) -> None:
    if x.ndim != 2:
        raise DetectInputError(f"features must be [N, D] rows, got shape {list(x.shape)}")
    if len(x) != n:
        raise DetectInputError(f"{len(x)} feature rows for {n} label sets; row i must describe example i.")
    if x.shape[1] == 0:
        raise DetectInputError("features have no columns: nothing to fit on.")
    if not np.isfinite(x).all():
        raise DetectInputError("features contain NaN or inf; fill or drop them first.")
    if n > 1 and (x == x[0]).all():
        raise DetectInputError("every feature is constant (all rows equal): nothing to tell the examples apart.")


def _binary_logreg(x_tr, bits, x_te, *, C, seed: int, max_iter: int | None, scaling: str) -> tuple[np.ndarray, dict]:
    """p(class) on ``x_te`` from a logistic regression of ``bits`` on ``x_tr``; C chosen on inner folds when auto."""
    from sklearn.model_selection import StratifiedKFold

    minority = int(min(bits.sum(), len(bits) - bits.sum()))
    info: dict = {}
    if C == "auto":
        model = make_classifier("logreg", seed=seed, C=1.0, max_iter=max_iter, scaling=scaling)
        if minority >= 2:  # inner folds need the class (and its absence) in each of them
            from sklearn.linear_model import LogisticRegressionCV

            inner = StratifiedKFold(min(AUTO_FOLDS, minority), shuffle=True, random_state=seed)
            model.steps[-1] = ("logisticregressioncv", LogisticRegressionCV(
                Cs=list(AUTO_CS), cv=inner, scoring="neg_log_loss", max_iter=max_iter or 1000))
        else:
            info["C_note"] = "one training example on one side: C = 1, not chosen"
    else:
        model = make_classifier("logreg", seed=seed, C=C, max_iter=max_iter, scaling=scaling)
    model.fit(x_tr, bits)
    if hasattr(model[-1], "C_"):
        info["C_chosen"] = float(np.ravel(model[-1].C_)[0])
    return model.predict_proba(x_te)[:, list(model.classes_).index(1)], info


def cross_fit_multilabel(features, labels, *, folds: int = 5, classifier: str = "logreg", seed: int = 0,
                         C: float | str = "auto", hidden: Sequence[int] = (256,), alpha: float = 1e-3,
                         max_iter: int | None = None, scaling: str = "global", true_labels=None, k: int = KNN_K,
                         log: Callable[[str], None] | None = None) -> CrossFit:
    """K-fold out-of-fold probabilities ``[N, K]`` of every class, from classifiers fitted on the other folds.

    Parameters
    ----------
    features : array (N, D)
        A feature table or embeddings, one row per example.
    labels : bool/0-1 array (N, K), or list of class-index lists
        The given label sets.
    folds : int
        K, iteratively stratified (:func:`multilabel_folds`), shuffled with ``seed``.
    classifier, C, hidden, alpha, max_iter, scaling, k
        As in the module docstring; ``C`` for ``logreg``, ``hidden`` and ``alpha`` for ``mlp``, ``k`` for ``knn``
        (which ignores ``folds``).
    true_labels : like ``labels``, optional
        For per-fold agreement with the truth in ``info``.
    log : callable, optional
        Gets one line per fold.

    Returns
    -------
    CrossFit
        ``pred_probs`` ``[N, K]`` (NaN in the columns of ``info["skipped"]``, the classes too rare to fit),
        ``fold``, ``seconds``, ``info`` (``classifier``, ``params``, ``folds``, ``seed``, ``dim``, ``skipped``
        ``{class index: why}``, ``per_fold`` with ``entry_agreement_with_given`` of the held-out entries at 0.5 and,
        with ``true_labels``, ``entry_accuracy_true``).
    """
    from sklearn.exceptions import ConvergenceWarning

    if classifier not in CLASSIFIERS:
        raise DetectInputError(f"classifier {classifier!r}: choose one of {', '.join(CLASSIFIERS)}")
    t0 = time.time()
    x = np.asarray(features, dtype=np.float32)
    y = label_matrix(labels)
    n = len(y)
    _check_features(x, n)
    true = label_matrix(true_labels, y.shape[1], name="true_labels") if true_labels is not None else None
    if classifier == "knn":
        return _knn_shares(x, y, k=k, scaling=scaling, true=true, t0=t0, log=log)
    fold = multilabel_folds(y, folds, seed=seed)
    skipped = unfittable_classes(y, fold, folds)
    fit = [c for c in range(y.shape[1]) if c not in skipped]
    out = np.full(y.shape, np.nan, dtype=np.float32)
    per_fold = []
    if not fit and log is not None:
        log(f"cross-fit {classifier} (multi-label): no class can be fitted out of fold with {folds} folds")
    for f in range(folds if fit else 0):
        tf = time.time()
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        chosen: dict[int, float] = {}
        notes: dict[int, str] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if classifier == "mlp":
                model = make_classifier("mlp", seed=seed + f, hidden=hidden, alpha=alpha, max_iter=max_iter,
                                        scaling=scaling)
                ytr = y[np.ix_(tr, fit)].astype(np.int64)
                if len(fit) == 1:  # one column is a binary problem to scikit-learn: [N, 2] probabilities
                    model.fit(x[tr], ytr[:, 0])
                    out[te, fit[0]] = model.predict_proba(x[te])[:, list(model.classes_).index(1)]
                else:  # both values in every column: unfittable_classes saw to it
                    model.fit(x[tr], ytr)
                    out[np.ix_(te, fit)] = model.predict_proba(x[te])
            else:
                for c in fit:
                    p, info = _binary_logreg(x[tr], y[tr, c].astype(np.int64), x[te], C=C, seed=seed + f,
                                             max_iter=max_iter, scaling=scaling)
                    out[te, c] = p
                    if "C_chosen" in info:
                        chosen[c] = info["C_chosen"]
                    if "C_note" in info:
                        notes[c] = info["C_note"]
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        held = out[np.ix_(te, fit)] >= 0.5
        info = {"fold": f, "train": len(tr), "held_out": len(te), "seconds": time.time() - tf,
                "entry_agreement_with_given": float(np.mean(held == y[np.ix_(te, fit)])),
                "entry_accuracy_true": float(np.mean(held == true[np.ix_(te, fit)])) if true is not None else None,
                "converged": converged}
        if chosen:
            info["C_chosen"] = {int(c): v for c, v in chosen.items()}
            info["C_chosen_median"] = float(np.median(list(chosen.values())))
        if notes:
            info["C_notes"] = {int(c): v for c, v in notes.items()}
        per_fold.append(info)
        if log is not None:
            more = (f", against the true labels {info['entry_accuracy_true']:.3f}"
                    if info["entry_accuracy_true"] is not None else "")
            log(f"cross-fit {classifier} (multi-label, {len(fit)} classes): fold {f + 1}/{folds} in "
                f"{info['seconds']:.1f} s: held-out entries agreeing with the given bits at p = 0.5 "
                f"{info['entry_agreement_with_given']:.3f}{more}" + ("" if converged else "; not converged")
                + (f"; median C chosen on inner folds {info['C_chosen_median']:.3g}" if chosen else ""))
    params = {"C": C} if classifier == "logreg" else {"hidden": list(hidden), "alpha": alpha}
    params.update(max_iter=max_iter or (1000 if classifier == "logreg" else 200), scaling=scaling)
    return CrossFit(pred_probs=out, fold=fold, seconds=time.time() - t0,
                    info={"classifier": classifier, "params": params, "folds": folds, "seed": seed,
                          "dim": int(x.shape[1]), "stratification": "iterative (Sechidis et al. 2011)",
                          "skipped": skipped, "per_fold": per_fold})


def _knn_shares(x: np.ndarray, y: np.ndarray, *, k: int, scaling: str, true, t0: float, log) -> CrossFit:
    """The ``knn`` classifier for label sets: each class's share among the neighbours (fold -1: no folds)."""
    from noisyfit.detect.neighbors import knn_graph, neighbor_class_shares

    xs = scale_features(x, scaling)
    graph = knn_graph(xs, k, metric=neighbour_metric(xs))
    skipped = too_rare_classes(y, KNN_MIN_EXAMPLES, f"fewer than {KNN_MIN_EXAMPLES}: too few for a neighbour vote")
    fit = [c for c in range(y.shape[1]) if c not in skipped]
    probs = np.full(y.shape, np.nan, dtype=np.float32)
    probs[:, fit] = neighbor_class_shares(graph, y[:, fit])
    held = probs[:, fit] >= 0.5
    agree = float(np.mean(held == y[:, fit])) if fit else None
    info = {"classifier": "knn", "params": {"k": graph.k, "metric": graph.metric, "scaling": scaling},
            "folds": "leave-one-out", "seed": None, "dim": int(x.shape[1]), "stratification": None,
            "skipped": skipped,
            "per_fold": [{"fold": -1, "held_out": len(y), "entry_agreement_with_given": agree,
                          "entry_accuracy_true": float(np.mean(held == true[:, fit])) if true is not None and fit
                          else None}]}
    if log is not None and fit:
        f = info["per_fold"][0]
        more = f", against the true labels {f['entry_accuracy_true']:.3f}" if true is not None else ""
        log(f"knn shares ({graph.k} nearest neighbours, {graph.metric}) in {time.time() - t0:.1f} s: entries agreeing "
            f"with the given bits at 0.5 {f['entry_agreement_with_given']:.3f}{more}")
    return CrossFit(pred_probs=probs, fold=np.full(len(y), -1, dtype=np.int64), seconds=time.time() - t0, info=info)


def audit_multilabel_features(features, labels, *, class_names: Sequence[str] | None = None,
                              ids: Sequence[str] | None = None, true_labels=None, folds: int = 5,
                              classifier: str = "logreg", seed: int = 0, C: float | str = "auto",
                              filter_by: str = "prune_by_noise_rate", check_quality: bool = True,
                              log: Callable[[str], None] | None = None, **cross_fit_kwargs):
    """Cross-fitted classifiers on features, then the one-vs-rest audit: a :class:`~noisyfit.detect.MultiLabelIssues`.

    Classes too rare to fit (``info["cross_fit"]["skipped"]``) are not audited: no entry of theirs is flagged,
    their ``per_class`` note says why, and their self-confidence in the example score is 1 (no evidence either
    way). ``info["cross_fit"]`` holds the per-fold figures; ``info["pred_probs"]`` is not stored (call
    :func:`cross_fit_multilabel` for the probabilities).
    """
    from noisyfit.detect.multilabel import multilabel_issues

    cf = cross_fit_multilabel(features, labels, folds=folds, classifier=classifier, seed=seed, C=C,
                              true_labels=true_labels, log=log, **cross_fit_kwargs)
    found = multilabel_issues(labels, cf.pred_probs, class_names=class_names, ids=ids, true_labels=true_labels,
                              filter_by=filter_by, skip=cf.info["skipped"], check_quality=check_quality)
    found.info["cross_fit"] = {**cf.info, "seconds": cf.seconds}
    return found
