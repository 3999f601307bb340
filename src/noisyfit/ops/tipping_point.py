"""Tipping point from generalising to overfitting: the first strict peak of a per-epoch curve.

Blind Knowledge Distillation (Kaiser et al., 2022) records, every epoch, the student's mean
max-probability over the training pass, ``m_e``. The tipping epoch is the first ``i`` with
``m_i > m_j`` for every ``j`` within ``+-window`` of ``i`` (``j != i``): a *strict* local maximum,
so a plateau (two equal neighbours) is not a peak. Peaks need a full window on both sides, hence the
peak can only be confirmed ``window`` epochs after it happened.

:func:`detect_tipping_epoch` adds the official code's extra rule (``detect_overfitting_epoch`` in
TimoK93/blind_knowledge_distillation, at HEAD): nothing is decided before ``min_epochs`` (6) epochs are
recorded. Officially a curve without a strict peak never tips.

It also offers a fallback that is ours, not official (off by default): when exactly
``fallback_epoch + 2`` epochs are recorded the answer is ``fallback_epoch``, checked *before* the peak
search, so a run without a peak by then is forced into its robust phase with that epoch's scores. Why:
short schedules (a 12-epoch CPU preset) whose curve has no peak in time. A ``10 epochs -> 8`` rule of
this form was in the official history for under two minutes (commit 1c3c351, removed by the next
commit, 8cec543) and is gone at HEAD.
"""

from __future__ import annotations

from typing import Sequence


def first_strict_peak(values: Sequence[float], window: int = 2) -> int | None:
    """Index of the first strict local maximum over ``+-window`` neighbours, or None.

    Parameters
    ----------
    values : sequence of float
        The curve, one value per epoch (epoch 0 first).
    window : int
        Neighbours on each side that must all be strictly smaller. Candidates are
        ``window <= i <= len(values) - 1 - window``.

    Returns
    -------
    int or None
        The first such index; None when the curve has no strict peak with a complete window
        (monotone curves, plateaus, peaks too close to either end).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    v = [float(x) for x in values]
    for i in range(window, len(v) - window):
        if all(v[i] > v[j] for j in range(i - window, i + window + 1) if j != i):
            return i
    return None


def detect_tipping_epoch(history: Sequence[float], *, window: int = 2, min_epochs: int = 6,
                         fallback_epoch: int | None = None) -> tuple[int, str] | None:
    """BKD's tipping-epoch rule, to be called once per epoch with the curve recorded so far.

    Parameters
    ----------
    history : sequence of float
        Student mean max-probability per epoch so far (``len(history)`` epochs recorded).
    window : int
        Half-width of the strict-peak window (official: 2).
    min_epochs : int
        No decision before this many epochs are recorded (official: 6).
    fallback_epoch : int or None
        None (default, the official behaviour): a curve without a peak never tips. An integer is our
        option: when exactly ``fallback_epoch + 2`` epochs are recorded, return ``fallback_epoch``
        whatever the curve (tested before the peak search).

    Returns
    -------
    (epoch, rule) or None
        ``rule`` is ``"peak"`` or ``"fallback"``; None while undecided.
    """
    n = len(history)
    if n < min_epochs:
        return None
    if fallback_epoch is not None and n == fallback_epoch + 2:
        return fallback_epoch, "fallback"
    peak = first_strict_peak(history, window)
    return None if peak is None else (peak, "peak")


def lookback_needed(window: int, min_epochs: int) -> int:
    """How many most recent epochs of per-sample scores must be kept to serve any tipping decision.

    At the first check (``min_epochs`` recorded) the oldest candidate is epoch ``window``, which is
    ``min_epochs - window`` epochs back counting the current one; later checks only add the newest
    candidate (``window + 1`` back); the fallback epoch is 2 back.
    """
    return max(min_epochs - window, window + 1, 2)
