"""cleanlab as an optional detector backend, used as it is (``pip install 'noisyfit[cleanlab]'``).

So users can compare: the same ``(labels, pred_probs)`` go to ``cleanlab.filter.find_label_issues``,
``cleanlab.rank.get_label_quality_scores`` and ``cleanlab.count.estimate_joint``; only the packaging
into :class:`~noisyfit.detect.issues.LabelIssues` is ours. cleanlab reads the whole array into memory
(its streaming path, ``experimental.label_issues_batched``, supports fewer filters).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from noisyfit.detect.count import NoiseEstimate, prepare
from noisyfit.detect.issues import LabelIssues, names_or_indices

INSTALL_HINT = "pip install 'noisyfit[cleanlab]'  (or: pip install 'cleanlab>=2.6,<3')"


class BackendUnavailableError(ImportError):
    """An optional backend is not installed; the message says how to install it."""


def _cleanlab():
    try:
        import cleanlab
        import cleanlab.count
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as err:
        raise BackendUnavailableError(f"the cleanlab detector needs cleanlab, which is not installed: "
                                      f"{INSTALL_HINT}; or use the built-in detector (--detector noisyfit).") from err
    return cleanlab


def audit_with_cleanlab(labels, pred_probs, *, filter_by: str = "prune_by_noise_rate",
                        rank_by: str = "self_confidence", class_names: Sequence[str] | None = None,
                        ids: Sequence[str] | None = None, true_labels=None, index: np.ndarray | None = None,
                        **find_kwargs) -> LabelIssues:
    """cleanlab's flags, scores and noise estimate as :class:`LabelIssues` (inputs validated by noisyfit first).

    ``find_kwargs`` go to ``cleanlab.filter.find_label_issues`` unchanged (``frac_noise``, ...).
    """
    cl = _cleanlab()
    t0 = time.time()
    lab, probs = prepare(labels, pred_probs, class_names=class_names)
    probs = np.asarray(probs)
    names = names_or_indices(class_names, probs.shape[1])
    find_kwargs.setdefault("n_jobs", 1)  # no forked worker pool unless asked (anchors §6.7)
    mask = cl.filter.find_label_issues(lab, probs, filter_by=filter_by, **find_kwargs)
    scores = cl.rank.get_label_quality_scores(lab, probs, method=rank_by)
    joint = cl.count.estimate_joint(lab, probs)  # rows given, columns true: as ours
    noise = NoiseEstimate.from_joint(joint * len(lab), method=f"cleanlab {cl.__version__} estimate_joint",
                                     num_label_issues=int(cl.count.num_label_issues(lab, probs)))
    other = probs.copy()
    other[np.arange(len(lab)), lab] = -np.inf
    best_other = other.argmax(axis=1)
    suggested = np.where(mask, best_other, probs.argmax(axis=1))
    reasons = {int(i): (f"cleanlab find_label_issues(filter_by={filter_by!r}); p({names[lab[i]]}) = "
                        f"{probs[i, lab[i]]:.3f}, most likely other class {names[best_other[i]]} "
                        f"(p = {probs[i, best_other[i]]:.3f})") for i in np.flatnonzero(mask)}
    return LabelIssues(is_issue=mask, given=lab, suggested=suggested, scores=scores, reasons=reasons,
                       class_names=names, detector=f"cleanlab {cl.__version__} ({filter_by})",
                       rule=f"cleanlab.filter.find_label_issues(filter_by={filter_by!r})", score_name=rank_by,
                       noise=noise, index=index, ids=list(ids) if ids is not None else None,
                       true_labels=true_labels, suggested_confidence=probs[np.arange(len(lab)), suggested],
                       info={"backend": "cleanlab", "cleanlab_version": cl.__version__, "filter_by": filter_by,
                             "rank_by": rank_by, "seconds": time.time() - t0, **find_kwargs})
