"""Synthetic label noise with exact, documented semantics.

Every generator here

* takes the *true* labels (``int64`` ``[N]``) and a ``seed`` (an ``int`` or a ``np.random.Generator``),
  draws only from that generator and never touches numpy's global random state;
* returns a :class:`NoiseResult` holding the noisy labels, the realised noise rate, the nominal transition
  matrix the model implies (row = true class, column = noisy class), the realised one counted from the
  (true, noisy) pairs, and a canonical spec string such as ``"sym:0.4"``.

Spec strings (what configs and the CLI use; see :func:`parse_noise_spec`):

* ``sym:r`` -- :func:`symmetric_flip`: a fraction r gets a uniformly chosen *different* class.
* ``symall:r`` (alias ``uniform:r``) -- :func:`symmetric_resample`: a fraction r is resampled over all C
  classes, so the true class can be redrawn; effective rate r·(1 − 1/C).
* ``asym:r`` -- 10 classes: :func:`asymmetric_cifar10`; 100 classes: :func:`cifar100_superclass`.
* ``pairflip:r`` -- :func:`pair_flip`: class i → (i + 1) mod C with probability r.
* ``idn:r`` -- :func:`instance_dependent` (Xia et al., 2020); needs the inputs as features.
* ``matrix:PATH.npy`` -- :func:`from_transition` with the C×C matrix saved in that file.

Exact counts versus per-sample coin flips
-----------------------------------------
The class-conditional generators (``sym``, ``symall``, ``asym``, ``pairflip``) take ``exact``.

* ``exact=True`` (default): the number of selected samples is fixed. The total is
  ``round(sum_c r_c · n_c)`` (half rounds up), shared between classes by largest remainder (ties broken at
  random), so each class gets ``floor`` or ``ceil`` of ``r_c · n_c`` and, e.g., ``sym:0.4`` on N samples
  changes exactly ``round(0.4·N)`` labels. Within a class the selected samples are a uniformly random subset,
  so every sample is still selected with probability r_c and the nominal transition matrix is unchanged;
  only the variance of the realised rate goes away. This matches PEMM's code (exactly r·N flips,
  r·N/C per class on balanced data) and, up to the stratification and the rounding, DivideMix/ELR, which
  take the first ``int(r·N)`` samples of a random permutation [RECALL].
* ``exact=False``: each sample is selected independently with probability r_c (a Bernoulli draw), as
  codes that sample every label from a transition matrix do (Co-teaching-style ``noisify`` helpers
  [RECALL]). The realised rate then fluctuates by about sqrt(r(1 − r)/N).

Instance-dependent noise and ``matrix:`` always sample each label from its own row.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Union

import numpy as np

from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.data.labels import check_labels

SeedLike = Union[int, np.integer, np.random.Generator]

#: Canonical noise kinds and a one-line description, used by the parser and in error messages.
NOISE_KINDS: dict[str, str] = {
    "sym": "symmetric: a fraction r gets a uniformly chosen different class",
    "symall": "symmetric resample over all C classes (alias 'uniform'); effective rate r*(1-1/C)",
    "asym": "class map: CIFAR-10 pairs (10 classes) or CIFAR-100 5-class blocks (100 classes)",
    "pairflip": "class i -> (i+1) mod C with probability r",
    "idn": "instance-dependent (Xia et al. 2020); uses the inputs as features",
    "matrix": "sample from a C x C row-stochastic matrix stored in a .npy file",
}
#: Other accepted spellings, mapped to the canonical kind.
NOISE_ALIASES: dict[str, str] = {"uniform": "symall"}
RATE_KINDS = ("sym", "symall", "asym", "pairflip", "idn")

#: The standard CIFAR-10 asymmetric map (torchvision class order): truck→automobile, bird→airplane,
#: cat↔dog, deer→horse. Classes 0 airplane, 1 automobile, 6 frog, 7 horse and 8 ship are never flipped.
CIFAR10_ASYM_MAP: dict[int, int] = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}

_FORMAT = "noisyfit-noise-v1"
_KINDS_TEXT = ", ".join(list(NOISE_KINDS) + [f"{a} (= {k})" for a, k in NOISE_ALIASES.items()])


# ====================================================================================== result type
@dataclass
class NoiseResult:
    """What a noise generator produced, with enough to audit and reproduce it.

    Attributes
    ----------
    labels : ndarray
        Noisy labels, ``int64`` ``[N]``.
    noise_rate : float
        Realised fraction of labels that differ from the true ones.
    transition : ndarray
        Nominal ``C x C`` row-stochastic matrix of the model (row = true class, column = noisy class).
        For instance-dependent noise, the mean of the per-instance rows of each true class (identity rows for
        classes with no sample).
    realised_transition : ndarray
        Empirical ``C x C`` matrix from the (true, noisy) counts with rows normalised; rows of classes that do
        not occur are all zero.
    spec : str
        Canonical spec, e.g. ``"sym:0.4"`` (see :func:`parse_noise_spec`).
    true_labels : ndarray
        The labels the noise was applied to, ``int64`` ``[N]``.
    seed : int or None
        The integer seed, or None when a ``np.random.Generator`` was passed.
    info : dict
        JSON-serialisable generator options (``exact``, ``groups``, ``norm_std``, ...).
    keep : ndarray of bool or None
        Which examples a run trains on; False drops the example (a cleaned label file of ``noisyfit
        audit --clean`` drops flagged examples it does not relabel). None: every example is kept.
    """

    labels: np.ndarray
    noise_rate: float
    transition: np.ndarray
    realised_transition: np.ndarray
    spec: str
    true_labels: np.ndarray
    seed: int | None = None
    info: dict = field(default_factory=dict)
    keep: np.ndarray | None = None

    @property
    def flipped(self) -> np.ndarray:
        """Boolean mask of samples whose noisy label differs from the true one."""
        return self.labels != self.true_labels

    @property
    def num_classes(self) -> int:
        return int(self.transition.shape[0])

    @property
    def expected_noise_rate(self) -> float:
        """Noise rate the nominal transition implies for these true labels: ``sum_c n_c (1 - T_cc) / N``."""
        if len(self.true_labels) == 0:
            return 0.0
        return float(np.mean(1.0 - np.diag(self.transition)[self.true_labels]))

    def summary(self) -> str:
        """One line for logs and the CLI."""
        seed = "generator" if self.seed is None else str(self.seed)
        return (f"{self.spec} on {len(self.labels)} labels, {self.num_classes} classes, seed {seed}: "
                f"realised noise rate {self.noise_rate:.4f} (expected {self.expected_noise_rate:.4f})")


# ====================================================================================== helpers
def _rng(seed: SeedLike) -> tuple[np.random.Generator, int | None]:
    """A private generator (never the global one) and the integer seed to record, if any."""
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative int or a np.random.Generator, got {seed!r}.")
    return np.random.default_rng(int(seed)), int(seed)


def _check_labels(labels: np.ndarray, num_classes: int, what: str = "labels") -> np.ndarray:
    """Labels as int64 in [0, C), or a DataError naming the problem (:func:`noisyfit.data.labels.check_labels`)."""
    if isinstance(num_classes, (bool, np.bool_)) or int(num_classes) != num_classes or num_classes < 2:
        raise DataError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    return check_labels(labels, int(num_classes), name=what,
                        hint="Pass the right num_classes, or remap the labels to 0..C-1.")


def _check_rate(rate: float, kind: str) -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise DataError(f"{kind}: the noise rate must be a number in [0, 1), got {rate!r}.") from None
    if not (0.0 <= r < 1.0):  # also rejects NaN
        hint = f" Give a fraction: '{kind}:{r / 100:g}' means {r:g}%." if 1.0 <= r < 100.0 else ""
        raise DataError(f"{kind}: noise rate {rate!r} is outside [0, 1).{hint}")
    return r


def _fmt_rate(rate: float) -> str:
    # repr keeps every digit (0.4 -> '0.4'), so the spec parses back to the same float.
    return repr(float(rate))


def _select(y: np.ndarray, class_rate: np.ndarray, exact: bool, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of samples to corrupt; sample i is selected with probability ``class_rate[y_i]``.

    With ``exact`` the count is fixed (see the module docstring) and each class's selected samples are a
    uniformly random subset of that class.
    """
    n, c = len(y), len(class_rate)
    if not exact:
        return rng.random(n) < class_rate[y]
    counts = np.bincount(y, minlength=c)
    target = class_rate * counts
    k = np.floor(target).astype(np.int64)
    total = int(math.floor(float(target.sum()) + 0.5))
    extra = total - int(k.sum())
    if extra > 0:
        frac = target - k
        # Largest remainder first; a random secondary key so ties do not always favour low class indices.
        order = np.lexsort((rng.permutation(c), -frac))
        k[order[:extra]] += 1
    k = np.minimum(k, counts)
    mask = np.zeros(n, dtype=bool)
    by_class = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for cls in np.flatnonzero(k):
        members = by_class[starts[cls]:starts[cls + 1]]
        mask[rng.choice(members, size=int(k[cls]), replace=False)] = True
    return mask


def _safe_cumsum(p: np.ndarray) -> np.ndarray:
    """Row-wise CDF for inverse-CDF sampling that can never land on a zero-probability class.

    Rows are renormalised, and every entry from the last positive class on is set above 1, so a uniform
    draw in [0, 1) that rounding pushes past the final cumulative value still picks that class.
    """
    cum = np.cumsum(p, axis=1)
    cum /= cum[:, -1:]
    c = p.shape[1]
    last_pos = c - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
    cum[np.arange(c)[None, :] >= last_pos[:, None]] = 2.0
    return cum


def _sample_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: class k where cum[k-1] <= u < cum[k]; ``cum`` broadcasts against ``u[:, None]``."""
    return (u[:, None] >= cum).sum(axis=1).astype(np.int64)


def _result(true: np.ndarray, noisy: np.ndarray, transition: np.ndarray, spec: str, seed: int | None,
            info: dict) -> NoiseResult:
    rate, realised = estimate_from_labels(true, noisy, transition.shape[0])
    return NoiseResult(labels=noisy, noise_rate=rate, transition=transition, realised_transition=realised,
                       spec=spec, true_labels=true, seed=seed, info=info)


def _mapped_flip(labels: np.ndarray, dst: np.ndarray, rate: float, seed: SeedLike, exact: bool, spec: str,
                 info: dict) -> NoiseResult:
    """Flip class c to ``dst[c]`` with probability r (classes with ``dst[c] == c`` stay).

    The targets are looked up from the *true* labels in one pass, so a label is never flipped twice, even
    for swaps such as cat↔dog (the cascade bug of ELR issue #16, where sequential in-place flips re-flip).
    """
    rng, int_seed = _rng(seed)
    c = len(dst)
    movable = dst != np.arange(c)
    mask = _select(labels, np.where(movable, rate, 0.0), exact, rng)
    noisy = labels.copy()
    noisy[mask] = dst[labels[mask]]
    t = np.eye(c)
    rows = np.flatnonzero(movable)
    t[rows, rows] = 1.0 - rate
    t[rows, dst[rows]] += rate
    return _result(labels, noisy, t, spec, int_seed, {"exact": bool(exact), **info})


# ====================================================================================== symmetric
def symmetric_flip(labels: np.ndarray, rate: float, num_classes: int, seed: SeedLike, *,
                   exact: bool = True) -> NoiseResult:
    """Symmetric noise that always changes the label (spec ``sym:r``).

    A fraction r of the samples is selected and each selected sample gets a class drawn uniformly from the
    C − 1 classes *other* than its true one, so the realised noise rate is r. Transition: ``1 − r`` on the
    diagonal, ``r / (C − 1)`` elsewhere. This is PEMM's convention (exactly r·N flips, r·N/C per class) and
    that of the transition-matrix ``noisify_multiclass_symmetric`` helpers of Co-teaching-style codes, which
    sample per label [RECALL]. DivideMix, ELR, PLReMix and Jump-teaching instead resample over *all*
    classes: use :func:`symmetric_resample` to reproduce them.

    Parameters
    ----------
    labels : ndarray
        True labels, ``[N]`` in ``[0, num_classes)``.
    rate : float
        Fraction r in ``[0, 1)`` of labels to change.
    num_classes : int
        C. Pass it explicitly: classes absent from ``labels`` are still valid targets.
    seed : int or numpy.random.Generator
        Source of randomness; the global numpy state is not used.
    exact : bool, default True
        True: exactly ``round(r·N)`` labels change, spread over classes in proportion to their size.
        False: each label changes independently with probability r.

    Returns
    -------
    NoiseResult
    """
    r = _check_rate(rate, "sym")
    y = _check_labels(labels, num_classes)
    rng, int_seed = _rng(seed)
    c = int(num_classes)
    mask = _select(y, np.full(c, r), exact, rng)
    noisy = y.copy()
    # Adding 1..C-1 modulo C gives each of the other classes with equal probability, never the true one.
    noisy[mask] = (y[mask] + rng.integers(1, c, size=int(mask.sum()))) % c
    t = np.full((c, c), r / (c - 1))
    np.fill_diagonal(t, 1.0 - r)
    return _result(y, noisy, t, f"sym:{_fmt_rate(r)}", int_seed, {"exact": bool(exact)})


def symmetric_resample(labels: np.ndarray, rate: float, num_classes: int, seed: SeedLike, *,
                       exact: bool = True) -> NoiseResult:
    """Symmetric noise that resamples over all classes (spec ``symall:r``, alias ``uniform:r``).

    A fraction r of the samples is selected and each selected sample gets a class drawn uniformly from all C
    classes, *including* its true one, so the effective noise rate is ``r·(1 − 1/C)`` (0.36 for r = 0.4 on
    10 classes). Transition: ``1 − r + r/C`` on the diagonal, ``r / C`` elsewhere. This is the convention of
    the official DivideMix and ELR codes (also PLReMix and Jump-teaching); the ReScience CIFAR-N study calls
    it "biased" because the nominal r overstates the noise. Use it to reproduce those papers' settings, and
    :func:`symmetric_flip` when r should be the real rate.

    Parameters
    ----------
    labels, rate, num_classes, seed
        As in :func:`symmetric_flip`; here r is the fraction *resampled*, not the fraction changed.
    exact : bool, default True
        True: exactly ``round(r·N)`` samples are resampled (DivideMix/ELR take ``int(r·N)`` from a random
        permutation, at most one sample fewer); the number that actually change is still random.
        False: each sample is resampled independently with probability r.

    Returns
    -------
    NoiseResult
        ``info["resampled"]`` holds the number of resampled samples.
    """
    r = _check_rate(rate, "symall")
    y = _check_labels(labels, num_classes)
    rng, int_seed = _rng(seed)
    c = int(num_classes)
    mask = _select(y, np.full(c, r), exact, rng)
    noisy = y.copy()
    noisy[mask] = rng.integers(0, c, size=int(mask.sum()))
    t = np.full((c, c), r / c)
    np.fill_diagonal(t, 1.0 - r + r / c)
    return _result(y, noisy, t, f"symall:{_fmt_rate(r)}", int_seed,
                   {"exact": bool(exact), "resampled": int(mask.sum())})


# ====================================================================================== class maps
def asymmetric_cifar10(labels: np.ndarray, rate: float, seed: SeedLike, *, exact: bool = True) -> NoiseResult:
    """The standard CIFAR-10 asymmetric noise (spec ``asym:r`` on 10 classes).

    With the torchvision class order (0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
    7 horse, 8 ship, 9 truck): truck→automobile (9→1), bird→airplane (2→0), cat↔dog (3↔5) and deer→horse
    (4→7), each with probability r; the other five classes are untouched (:data:`CIFAR10_ASYM_MAP`). On
    balanced data the overall noise rate is therefore r·5/10. Used by DivideMix, ELR, PEMM, PLReMix and
    Jump-teaching. Targets come from the true labels in one pass, so a cat turned dog is never turned back.

    Parameters
    ----------
    labels : ndarray
        True CIFAR-10 labels in ``[0, 10)``.
    rate : float
        Flip probability r in ``[0, 1)`` for each mapped class.
    seed : int or numpy.random.Generator
    exact : bool, default True
        True: in each mapped class exactly ``round(r·n_c)`` samples flip (PEMM flips ``int(r·n_c)``).
        False: each sample of a mapped class flips with probability r.

    Returns
    -------
    NoiseResult
    """
    r = _check_rate(rate, "asym")
    y = _check_labels(labels, 10)
    dst = np.arange(10)
    for src, tgt in CIFAR10_ASYM_MAP.items():
        dst[src] = tgt
    return _mapped_flip(y, dst, r, seed, exact, f"asym:{_fmt_rate(r)}", {"map": "cifar10"})


def cifar100_superclass(labels: np.ndarray, rate: float, seed: SeedLike, *,
                        groups: Sequence[Sequence[int]] | None = None, num_classes: int = 100,
                        exact: bool = True) -> NoiseResult:
    """CIFAR-100 "superclass" asymmetric noise (spec ``asym:r`` on 100 classes).

    Inside each group, class ``g[j]`` flips to ``g[(j + 1) % len(g)]`` (the next class of the group,
    circularly) with probability r. Classes in no group (or in a group of one) are untouched.

    **Assumption about the class order.** By default the groups are the 20 blocks of 5 *consecutive* class
    indices, ``[0..4], [5..9], ..., [95..99]``: the construction of the noise literature's code (DivideMix,
    ELR, PEMM, PLReMix; it goes back to Patrini et al. 2017 [RECALL]), which treats those blocks as
    superclasses. With the standard CIFAR-100 fine-label order (alphabetical: apple, aquarium_fish, baby,
    bear, beaver, ...) such blocks are *not* the semantic coarse classes, so the default reproduces the
    published protocol, not a semantic one. For flips within the real superclasses pass
    ``groups=groups_from_coarse_labels(fine, coarse)`` built from the dataset's ``coarse_labels``. Note that
    Jump-teaching's code calls a global pair flip "asym" on CIFAR-100: use ``pairflip:r`` for that.

    Parameters
    ----------
    labels : ndarray
        True labels in ``[0, num_classes)``.
    rate : float
        Flip probability r in ``[0, 1)``.
    seed : int or numpy.random.Generator
    groups : sequence of sequences of int, optional
        Disjoint groups of class indices; the order inside a group defines "next". Default: blocks of 5.
    num_classes : int, default 100
        C; without ``groups`` it must be a multiple of 5.
    exact : bool, default True
        As in :func:`asymmetric_cifar10`.

    Returns
    -------
    NoiseResult
        ``info["groups"]`` lists the groups used.
    """
    r = _check_rate(rate, "asym")
    c = int(num_classes)
    if groups is None:
        if c % 5:
            raise DataError("asym: the default CIFAR-100 groups are blocks of 5 classes, but "
                            f"num_classes={c} is not a multiple of 5; pass groups=[[...], ...] explicitly.")
        groups = [list(range(s, s + 5)) for s in range(0, c, 5)]
    groups = [[int(k) for k in g] for g in groups]
    seen: set[int] = set()
    for g in groups:
        for k in g:
            if not 0 <= k < c:
                raise DataError(f"asym: group {g} has class {k} outside [0, {c}); "
                                "fix the groups or num_classes.")
            if k in seen:
                raise DataError(f"asym: class {k} appears in more than one group (or twice); groups must be "
                                "disjoint.")
            seen.add(k)
    y = _check_labels(labels, c)
    dst = np.arange(c)
    for g in groups:
        for j, k in enumerate(g):
            dst[k] = g[(j + 1) % len(g)]
    return _mapped_flip(y, dst, r, seed, exact, f"asym:{_fmt_rate(r)}", {"map": "groups", "groups": groups})


def groups_from_coarse_labels(fine_labels: np.ndarray, coarse_labels: np.ndarray) -> list[list[int]]:
    """Groups of fine classes sharing a coarse label, for :func:`cifar100_superclass`.

    Parameters
    ----------
    fine_labels, coarse_labels : ndarray
        Per-sample fine and coarse labels (e.g. CIFAR-100's ``fine_labels`` and ``coarse_labels``).

    Returns
    -------
    list of list of int
        One sorted list of fine classes per coarse class, ordered by coarse index.
    """
    fine = np.asarray(fine_labels, dtype=np.int64)
    coarse = np.asarray(coarse_labels, dtype=np.int64)
    if fine.shape != coarse.shape:
        raise DataError(f"fine labels {fine.shape} and coarse labels {coarse.shape} must have the same "
                        "shape.")
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    if len(np.unique(pairs[:, 0])) != len(pairs):
        f = int(pairs[np.flatnonzero(np.diff(pairs[:, 0]) == 0)[0], 0])
        raise DataError(f"fine class {f} has more than one coarse label; the fine→coarse map must be a "
                        "function.")
    return [sorted(int(f) for f in pairs[pairs[:, 1] == k, 0]) for k in np.unique(pairs[:, 1])]


def pair_flip(labels: np.ndarray, rate: float, num_classes: int, seed: SeedLike, *,
              exact: bool = True) -> NoiseResult:
    """Pair-flip noise (spec ``pairflip:r``): class i → (i + 1) mod C with probability r.

    The "pair" noise of Co-teaching (Han et al. 2018), usually at r = 0.45; Jump-teaching's code also uses
    it as "asym" on CIFAR-100. Transition: ``1 − r`` on the diagonal, r on the circular super-diagonal.

    Parameters
    ----------
    labels, rate, num_classes, seed, exact
        As in :func:`symmetric_flip`.

    Returns
    -------
    NoiseResult
    """
    r = _check_rate(rate, "pairflip")
    y = _check_labels(labels, num_classes)
    c = int(num_classes)
    return _mapped_flip(y, (np.arange(c) + 1) % c, r, seed, exact, f"pairflip:{_fmt_rate(r)}", {})


# ====================================================================================== instance-dependent
def instance_dependent(labels: np.ndarray, features: np.ndarray, rate: float, num_classes: int,
                       seed: SeedLike, *, norm_std: float = 0.1, chunk_size: int = 2048) -> NoiseResult:
    """Instance-dependent noise of Xia et al. 2020 (spec ``idn:r``).

    "Part-dependent label noise: towards instance-dependent label noise" (NeurIPS 2020), generation
    algorithm as in its official code, also used by Jump-teaching ("ins") and Co-learning:

    1. per-sample flip rates ``q_i`` from a normal N(r, norm_std²) truncated to [0, 1];
    2. a random projection W of shape [D, C, C] with standard-normal entries;
    3. for sample i: scores ``s = x_i · W[:, y_i, :]`` with x_i flattened and L2-normalised,
       ``s[y_i] = −inf``, a softmax over the other classes scaled to ``q_i``, and ``1 − q_i`` on ``y_i``;
    4. the noisy label is drawn from that row.

    The realised rate is close to mean(q), which is r for r well inside (0, 1) but above r for small r
    (truncation at 0; e.g. mean ≈ 0.129 for r = 0.1), as in the original. r = 0 gives no noise.

    Parameters
    ----------
    labels : ndarray
        True labels ``[N]``.
    features : ndarray
        One row of inputs per sample, any shape ``[N, ...]``: images are flattened to ``[N, H*W*C]`` and used
        as float pixel values, feature rows as they are. Each row is L2-normalised, so a global scale (0..255
        vs 0..1) does not matter; the official code fed per-channel normalised image tensors, so centre the
        features first if you need that exact input.
    rate : float
        Mean flip rate r in ``[0, 1)``.
    num_classes : int
        C.
    seed : int or numpy.random.Generator
    norm_std : float, default 0.1
        Standard deviation of the flip-rate distribution (0 gives every sample the rate r).
    chunk_size : int, default 2048
        Rows converted to float at a time, to bound memory on large image sets.

    Returns
    -------
    NoiseResult
        ``transition`` is the mean of the per-instance rows of each true class.
    """
    r = _check_rate(rate, "idn")
    y = _check_labels(labels, num_classes)
    c, n = int(num_classes), len(y)
    x = np.asarray(features)
    if len(x) != n:
        raise DataError(f"idn: {len(x)} feature rows for {n} labels; pass one row of inputs per label.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"idn: features must be numeric, got dtype {x.dtype}.")
    x = x.reshape(n, -1)
    if not np.isfinite(norm_std) or norm_std < 0:
        raise DataError(f"idn: norm_std must be a finite number >= 0, got {norm_std!r}.")
    rng, int_seed = _rng(seed)
    # Fixed draw order (flip rates, uniforms, then one projection slice per class, present or not), so the
    # outcome depends only on the seed, never on which classes occur or on chunk_size.
    if r == 0.0:
        q = np.zeros(n)
    elif norm_std == 0:
        q = np.full(n, r)
    else:
        from scipy.stats import truncnorm

        q = truncnorm.rvs((0.0 - r) / norm_std, (1.0 - r) / norm_std, loc=r, scale=norm_std, size=n,
                          random_state=rng)
        q = np.clip(q, 0.0, 1.0)
    u = rng.random(n)
    noisy = y.copy()
    row_sum = np.zeros((c, c))
    counts = np.bincount(y, minlength=c)
    by_class = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for k in range(c):
        w_k = rng.standard_normal((x.shape[1], c))  # W[:, k, :]
        members = by_class[starts[k]:starts[k + 1]]
        for s in range(0, len(members), chunk_size):
            idx = members[s:s + chunk_size]
            xb = x[idx].astype(np.float64)
            norms = np.linalg.norm(xb, axis=1, keepdims=True)
            xb /= np.where(norms > 0, norms, 1.0)  # an all-zero row gives equal scores: uniform over others
            scores = xb @ w_k
            scores[:, k] = -np.inf
            scores -= scores.max(axis=1, keepdims=True)
            soft = np.exp(scores)
            soft /= soft.sum(axis=1, keepdims=True)
            p = q[idx, None] * soft
            p[:, k] = 1.0 - q[idx]
            noisy[idx] = _sample_rows(_safe_cumsum(p), u[idx])
            row_sum[k] += p.sum(axis=0)
    t = np.eye(c)
    present = counts > 0
    t[present] = row_sum[present] / counts[present, None]
    return _result(y, noisy, t, f"idn:{_fmt_rate(r)}", int_seed, {"norm_std": float(norm_std)})


# ====================================================================================== transition matrix
def validate_transition(transition: np.ndarray, num_classes: int | None = None,
                        source: str = "T") -> np.ndarray:
    """Check a noise transition matrix and return it as float64.

    Raises
    ------
    DataError
        Unless it is square (and ``num_classes x num_classes`` when given), finite, non-negative and every row
        sums to 1 within 1e-6; the message says how to fix it.
    """
    t = np.asarray(transition)
    if t.dtype.kind not in "biuf":
        raise DataError(f"{source}: the transition matrix must be numeric, got dtype {t.dtype}.")
    t = t.astype(np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise DataError(f"{source}: the transition matrix must be square C x C (row = true class, column = "
                        f"noisy class), got shape {t.shape}.")
    if num_classes is not None and t.shape[0] != num_classes:
        raise DataError(f"{source}: the transition matrix is {t.shape[0]} x {t.shape[1]} but the data has "
                        f"{num_classes} classes; it must be {num_classes} x {num_classes}.")
    if not np.all(np.isfinite(t)):
        raise DataError(f"{source}: the transition matrix contains NaN or inf.")
    if np.any(t < 0):
        i, j = np.argwhere(t < 0)[0]
        raise DataError(f"{source}: T[{i}, {j}] = {t[i, j]:g} is negative; probabilities must be >= 0.")
    sums = t.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{source}: row {i} of the transition matrix sums to {sums[i]:.6g}, not 1 "
                        f"({bad.size} such rows); each row is P(noisy | true) and must sum to 1 within 1e-6, "
                        "e.g. T = T / T.sum(axis=1, keepdims=True).")
    return t


def from_transition(labels: np.ndarray, transition: np.ndarray | str | os.PathLike, seed: SeedLike, *,
                    num_classes: int | None = None) -> NoiseResult:
    """Class-conditional noise from an explicit matrix (spec ``matrix:PATH.npy``).

    Each noisy label is drawn from row ``T[y_i]`` independently (per-sample sampling, no exact counts).

    Parameters
    ----------
    labels : ndarray
        True labels ``[N]``.
    transition : ndarray or path
        ``C x C`` row-stochastic matrix (row = true class), or the path of a ``.npy`` file holding it.
    seed : int or numpy.random.Generator
    num_classes : int, optional
        When given, T must be ``num_classes x num_classes``.

    Returns
    -------
    NoiseResult
        ``spec`` is ``"matrix:PATH"`` for a file and ``"matrix:<array>"`` for an in-memory matrix.
    """
    if isinstance(transition, (str, os.PathLike)):
        path = Path(transition)
        t = validate_transition(_load_matrix(path), num_classes, source=str(path))
        spec, info = f"matrix:{path}", {"path": str(path)}
    else:
        t = validate_transition(transition, num_classes)
        spec, info = "matrix:<array>", {}
    c = t.shape[0]
    y = _check_labels(labels, c)
    rng, int_seed = _rng(seed)
    u = rng.random(len(y))
    cum = _safe_cumsum(t)
    noisy = y.copy()
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        noisy[idx] = _sample_rows(cum[k:k + 1], u[idx])
    return _result(y, noisy, t, spec, int_seed, info)


def _load_matrix(path: Path) -> np.ndarray:
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: a transition matrix file must be a .npy file (np.save(path, T)).")
    if not path.is_file():
        raise DataError(f"{path}: transition matrix file not found; check the path after 'matrix:'.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read it as a .npy array ({exc}); "
                        "save T with np.save(path, T).") from exc


def noise_transition(kind: str, rate: float, num_classes: int, *,
                     groups: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Nominal transition matrix of a class-conditional kind (``sym``, ``symall``, ``asym``, ``pairflip``).

    Handy for metrics and for building ``matrix:`` files. ``idn`` has no class-level matrix (it depends on
    the inputs) and ``matrix`` is its own matrix, so both are rejected.
    """
    kind = NOISE_ALIASES.get(kind.lower(), kind.lower())
    if kind not in ("sym", "symall", "asym", "pairflip"):
        raise DataError(f"noise_transition: kind must be one of sym, symall, asym, pairflip, got {kind!r}.")
    dummy = np.arange(num_classes) % num_classes  # one sample per class; only the matrix is used
    return make_noise(dummy, f"{kind}:{_fmt_rate(_check_rate(rate, kind))}", num_classes, 0,
                      groups=groups).transition


# ====================================================================================== estimates
def estimate_from_labels(true_labels: np.ndarray, noisy_labels: np.ndarray,
                         num_classes: int) -> tuple[float, np.ndarray]:
    """Realised noise rate and transition matrix from paired labels.

    Parameters
    ----------
    true_labels, noisy_labels : ndarray
        ``[N]`` class indices.
    num_classes : int
        C.

    Returns
    -------
    rate : float
        Fraction of ``noisy != true`` (0.0 for no samples).
    transition : ndarray
        ``C x C``: entry (i, j) is the fraction of true-class-i samples labelled j; rows of absent classes
        are 0.
    """
    c = int(num_classes)
    t = _check_labels(true_labels, c, "true labels")
    z = _check_labels(noisy_labels, c, "noisy labels")
    if len(t) != len(z):
        raise DataError(f"{len(t)} true labels but {len(z)} noisy labels; they must be paired one to one.")
    counts = np.bincount(t * c + z, minlength=c * c).reshape(c, c).astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    realised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    rate = float(np.mean(t != z)) if len(t) else 0.0
    return rate, realised


# ====================================================================================== specs
_SPEC_RE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(\S.*?)\s*$")


def parse_noise_spec(spec: str) -> tuple[str, float | str]:
    """Split a spec string into its canonical kind and its rate (or matrix path).

    Forms: ``sym:0.4``, ``symall:0.5`` (or ``uniform:0.5``), ``asym:0.4``, ``pairflip:0.45``, ``idn:0.4``,
    ``matrix:path/to/T.npy``. Kinds are case-insensitive; rates are fractions in ``[0, 1)``.

    Returns
    -------
    kind : str
        Canonical kind (aliases resolved).
    value : float or str
        The rate, or the path for ``matrix``.

    Raises
    ------
    DataError
        For a string that does not parse, an unknown kind (the message lists the valid ones) or a rate
        outside ``[0, 1)``.
    """
    if not isinstance(spec, str):
        raise DataError(f"noise spec must be a string like 'sym:0.4', got {spec!r}.")
    m = _SPEC_RE.match(spec)
    if not m:
        raise DataError(f"cannot parse noise spec {spec!r}: expected KIND:RATE, e.g. 'sym:0.4', or "
                        f"'matrix:PATH.npy'; valid kinds: {_KINDS_TEXT}.")
    raw_kind, value = m.group(1).lower(), m.group(2)
    kind = NOISE_ALIASES.get(raw_kind, raw_kind)
    if kind not in NOISE_KINDS:
        raise DataError(f"unknown noise kind {m.group(1)!r} in {spec!r}; valid kinds: {_KINDS_TEXT}.")
    if kind == "matrix":
        if not value.lower().endswith(".npy"):
            raise DataError(f"noise spec {spec!r}: expected 'matrix:PATH.npy', a C x C matrix saved with "
                            "np.save.")
        return kind, value
    if value.endswith("%"):
        # Percentages invite 'sym:40' vs 'sym:0.4' mix-ups; one form only, and say which.
        raise DataError(f"noise spec {spec!r}: give the rate as a fraction in [0, 1), "
                        f"e.g. '{kind}:0.4' for 40%.")
    try:
        rate = float(value)
    except ValueError:
        raise DataError(f"cannot parse the rate {value!r} in noise spec {spec!r}: expected {kind}:RATE "
                        f"with RATE a fraction in [0, 1), e.g. '{kind}:0.4'.") from None
    return kind, _check_rate(rate, kind)


def make_noise(labels: np.ndarray, spec: str, num_classes: int, seed: SeedLike, *,
               features: np.ndarray | None = None, exact: bool = True,
               groups: Sequence[Sequence[int]] | None = None) -> NoiseResult:
    """Apply a spec to an array of true labels (the array-level form of :func:`apply_noise`).

    Parameters
    ----------
    labels : ndarray
        True labels ``[N]``.
    spec : str
        See :func:`parse_noise_spec`.
    num_classes : int
        C.
    seed : int or numpy.random.Generator
    features : ndarray, optional
        Inputs, one row per label; required by ``idn``.
    exact : bool, default True
        Exact counts (True) or per-sample draws (False) for ``sym``, ``symall``, ``asym``, ``pairflip``.
    groups : sequence of sequences of int, optional
        Class groups for ``asym`` on classes other than the CIFAR-10 map (default: blocks of 5 when C = 100).

    Returns
    -------
    NoiseResult
    """
    kind, value = parse_noise_spec(spec)
    c = int(num_classes)
    if kind == "sym":
        return symmetric_flip(labels, value, c, seed, exact=exact)
    if kind == "symall":
        return symmetric_resample(labels, value, c, seed, exact=exact)
    if kind == "pairflip":
        return pair_flip(labels, value, c, seed, exact=exact)
    if kind == "asym":
        if groups is not None:
            return cifar100_superclass(labels, value, seed, groups=groups, num_classes=c, exact=exact)
        if c == 10:
            return asymmetric_cifar10(labels, value, seed, exact=exact)
        if c == 100:
            return cifar100_superclass(labels, value, seed, num_classes=c, exact=exact)
        raise DataError("'asym' has a defined class map only for 10 classes (CIFAR-10 pairs) and 100 "
                        f"classes (CIFAR-100 5-class blocks), but the data has {c} classes; use "
                        f"'pairflip:{value!r}' or 'matrix:PATH.npy' with your own C x C matrix "
                        "(or pass groups=).")
    if kind == "idn":
        if features is None:
            raise DataError("'idn' noise depends on the inputs: pass features (one row per label).")
        return instance_dependent(labels, features, value, c, seed)
    return from_transition(labels, str(value), seed, num_classes=c)


def _check_cifar10_map(spec: str, data: LabeledData, groups) -> None:
    """``asym`` on 10 classes flips CIFAR-10's pairs by class index: refuse it for 10 classes of other names,
    where truck->automobile would be, say, digit 9 -> digit 1 (the rate realised would not be the rate asked)."""
    from noisyfit.data.cifar10_jpeg import CIFAR10_CLASSES  # here: the loader's module imports much more

    kind, value = parse_noise_spec(spec)
    names = [str(n).lower() for n in data.class_names]
    if kind != "asym" or groups is not None or data.num_classes != 10 or names == CIFAR10_CLASSES:
        return
    raise DataError(f"'asym' on 10 classes is CIFAR-10's class map (truck->automobile, bird->airplane, cat<->dog, "
                    f"deer->horse, by class index), but {data.name}'s classes are {list(data.class_names)}; use "
                    f"'pairflip:{value!r}' (each class to the next), 'sym:{value!r}', or 'matrix:PATH.npy' with your "
                    "own 10 x 10 matrix.")


def apply_noise(data: LabeledData, spec: str, *, seed: SeedLike, exact: bool = True,
                groups: Sequence[Sequence[int]] | None = None,
                features: np.ndarray | None = None) -> tuple[LabeledData, NoiseResult]:
    """Inject synthetic noise into a dataset.

    The noise is applied to the true labels: ``data.true_labels`` when known (so re-noising a noisy set
    starts from the clean labels), else ``data.labels``, which then become the true labels.

    Parameters
    ----------
    data : LabeledData
    spec : str
        E.g. ``"sym:0.4"``; see :func:`parse_noise_spec`.
    seed : int or numpy.random.Generator
    exact, groups
        As in :func:`make_noise`.
    features : ndarray, optional
        Inputs for ``idn``; default ``data.x`` (images flattened to float pixel values).

    Returns
    -------
    noisy_data : LabeledData
        Same examples, the noisy labels as given labels and the clean ones as ``true_labels``.
    result : NoiseResult
    """
    true = data.true_labels if data.true_labels is not None else data.labels
    _check_cifar10_map(spec, data, groups)
    result = make_noise(true, spec, data.num_classes, seed, exact=exact, groups=groups,
                        features=data.x if features is None else features)
    return data.with_labels(result.labels), result


# ====================================================================================== noise files
def save_noisy_labels(path: str | os.PathLike, result: NoiseResult, data_name: str) -> Path:
    """Write a noise file (``.npz``) so a run can reuse exactly these labels.

    Stored keys: ``labels``, ``true_labels``, ``spec``, ``seed`` (-1 when a Generator was used),
    ``noise_rate``, ``transition``, ``realised_transition``, ``data_name``, ``info`` (JSON) and ``format``;
    ``keep`` (bool) only when the result drops examples.

    Parameters
    ----------
    path : path
        Target file; ``.npz`` is appended when missing. Parent directories are created.
    result : NoiseResult
    data_name : str
        The dataset the labels belong to, e.g. ``"cifar10/train"``.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    optional = {} if result.keep is None else {"keep": np.asarray(result.keep, dtype=bool)}
    # Write then rename, so a crash never leaves a half-written file under the real name.
    with open(tmp, "wb") as fh:
        np.savez(fh, **optional, format=np.array(_FORMAT), labels=np.asarray(result.labels, dtype=np.int64),
                 true_labels=np.asarray(result.true_labels, dtype=np.int64), spec=np.array(result.spec),
                 seed=np.array(-1 if result.seed is None else int(result.seed), dtype=np.int64),
                 noise_rate=np.array(float(result.noise_rate)),
                 transition=np.asarray(result.transition, dtype=np.float64),
                 realised_transition=np.asarray(result.realised_transition, dtype=np.float64),
                 data_name=np.array(str(data_name)), info=np.array(json.dumps(result.info, sort_keys=True)))
    os.replace(tmp, path)
    return path


_REQUIRED_KEYS = ("format", "labels", "true_labels", "spec", "seed", "noise_rate", "transition",
                  "realised_transition", "data_name", "info")


def load_noisy_labels(path: str | os.PathLike, *, num_examples: int | None = None,
                      num_classes: int | None = None) -> NoiseResult:
    """Read a noise file written by :func:`save_noisy_labels`.

    Parameters
    ----------
    path : path
    num_examples : int, optional
        Length of the dataset the labels are for; a different label count is an error.
    num_classes : int, optional
        Class count of that dataset; a different one is an error.

    Returns
    -------
    NoiseResult
        ``info["data_name"]`` holds the stored dataset name.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: noise file not found; create it with `noisyfit noise` or "
                        "save_noisy_labels().")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _REQUIRED_KEYS if k not in z.files]
            if missing or str(z["format"]) != _FORMAT:
                raise DataError(f"{path}: not a noisyfit noise file (missing {missing or ['format']}); "
                                "regenerate it with `noisyfit noise`.")
            d = {k: z[k] for k in _REQUIRED_KEYS}
            keep = z["keep"] if "keep" in z.files else None
    except DataError:
        raise
    except (ValueError, OSError) as exc:  # not a zip / corrupt archive
        raise DataError(f"{path}: cannot read the noise file ({exc}); "
                        "regenerate it with `noisyfit noise`.") from exc
    data_name = str(d["data_name"])
    n = len(d["labels"])
    if num_examples is not None and n != num_examples:
        raise DataError(f"{path}: the noise file has {n} labels (made for {data_name!r}) but the dataset has "
                        f"{num_examples} examples; use the noise file made for this dataset or regenerate it "
                        "with `noisyfit noise`.")
    c = d["transition"].shape[0]
    if num_classes is not None and c != num_classes:
        raise DataError(f"{path}: the noise file is for {c} classes (made for {data_name!r}) but the dataset "
                        f"has {num_classes}; regenerate it with `noisyfit noise`.")
    for key in ("labels", "true_labels"):  # a damaged or hand-made file: name the entry and the file
        check_labels(d[key], c, name=key, where=str(path), hint="Regenerate the file with `noisyfit noise`.")
    if keep is not None and (keep.dtype != bool or keep.shape != (n,)):
        raise DataError(f"{path}: 'keep' must be {n} booleans (one per label), got {keep.dtype} {keep.shape}; "
                        "write the file again with `noisyfit audit --clean`.")
    seed = int(d["seed"])
    info = json.loads(str(d["info"]))
    info["data_name"] = data_name
    return NoiseResult(labels=d["labels"].astype(np.int64), noise_rate=float(d["noise_rate"]),
                       transition=d["transition"], realised_transition=d["realised_transition"],
                       spec=str(d["spec"]), true_labels=d["true_labels"].astype(np.int64),
                       seed=None if seed < 0 else seed, info=info,
                       keep=None if keep is None or keep.all() else keep)


def attach_noisy_labels(data: LabeledData, result: NoiseResult) -> LabeledData:
    """Give ``data`` the noisy labels of a (loaded) result, after checking they belong to it.

    The result's true labels must equal the dataset's true labels (or its given labels when it has none);
    otherwise the file was made for other data or another example order. The data keep no true labels when
    they had none and the file says its reference labels were not known to be true (a cleaned file of an
    audit on the user's own data): they are the given labels the audit started from.
    """
    if len(result.labels) != len(data):
        raise DataError(f"{data.name}: {len(result.labels)} noisy labels for {len(data)} examples; "
                        "use the noise file made for this dataset.")
    if result.num_classes != data.num_classes:
        raise DataError(f"{data.name}: noisy labels are for {result.num_classes} classes, the data has "
                        f"{data.num_classes}.")
    # a cleaned file of `noisyfit audit` on data without a truth: its "true_labels" are the labels the audit was
    # given, not a truth, so they are checked against the data's given labels (the same rows with a true_label
    # column added had been refused as other data, a user trial), and a run scores only against a real truth
    audit_reference = (result.info or {}).get("labels_known") is False
    true = data.labels if audit_reference or data.true_labels is None else data.true_labels
    diff = np.flatnonzero(true != result.true_labels)
    if diff.size:
        which = ("the labels the audit was given differ from the data's given labels" if audit_reference else
                 "the noise file's true labels differ from the dataset's")
        raise DataError(f"{data.name}: {which} at {diff.size} examples (first index {int(diff[0])}); it was made "
                        "for other data, another example order or another label column. Regenerate it (`noisyfit "
                        "noise`, or `noisyfit audit --clean` on these data).")
    if audit_reference:
        return replace(data, labels=np.asarray(result.labels, dtype=np.int64))  # the data's own truth, if any, stays
    return data.with_labels(result.labels)


def kept_rows(index: np.ndarray, result: NoiseResult | None) -> np.ndarray:
    """The entries of ``index`` (source rows) that ``result.keep`` keeps; all of them without a mask.

    A run drops rows after drawing its validation split, so a cleaned label file changes no other row's
    split and the retrained run stays comparable with one on the original labels.
    """
    if result is None or result.keep is None:
        return index
    return index[result.keep[index]]
