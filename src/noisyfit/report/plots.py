"""Figures of the audit report as PNG bytes (matplotlib's Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

_RED, _GREY, _BLUE = "#c0392b", "#95a5a6", "#2c6fbb"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def transition_heatmap(matrix: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Heatmap of ``matrix[true, given]`` = P(given | true), cells annotated when there are few classes."""
    m = np.asarray(matrix, dtype=np.float64)
    c = len(m)
    side = min(2.2 + 0.3 * c, 10.0)
    fig = _figure(side + 0.9, side)
    ax = fig.add_subplot()
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if c <= 30:
        ticks = np.arange(c)
        ax.set_xticks(ticks, [str(n) for n in class_names], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(ticks, [str(n) for n in class_names], fontsize=8)
    if c <= 15:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > 0.55 else "black")
    ax.set_xlabel("given label")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def class_counts_bar(class_names: Sequence[str], examples: Sequence[int], issues: Sequence[int]) -> bytes:
    """Flagged examples per given class, with the flagged fraction written above each bar."""
    c = len(class_names)
    fig = _figure(min(3.0 + 0.5 * c, 14.0), 3.2)
    ax = fig.add_subplot()
    x = np.arange(c)
    ax.bar(x, issues, color=_RED)
    for i, (n, k) in enumerate(zip(examples, issues)):
        if c <= 30:
            ax.text(i, k, f"{100 * k / max(n, 1):.0f}%", ha="center", va="bottom", fontsize=7)
    if c <= 30:
        ax.set_xticks(x, [str(n) for n in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("flagged examples")
    ax.set_xlabel("given label (percent: flagged share of the class)")
    ax.margins(y=0.15)
    return _png(fig)


def score_histogram(scores: np.ndarray, flags: np.ndarray, *, threshold: float | None, score_name: str,
                    truly_wrong: np.ndarray | None = None) -> bytes:
    """Distribution of the scores, flagged vs kept, with the threshold the detector used (if one)."""
    s = np.asarray(scores, dtype=np.float64)
    flags = np.asarray(flags, dtype=bool)
    lo, hi = (float(np.nanmin(s)), float(np.nanmax(s))) if s.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    fig = _figure(7.0, 3.4)
    ax = fig.add_subplot()
    ax.hist([s[~flags], s[flags]], bins=bins, stacked=True, color=[_GREY, _RED],
            label=[f"kept ({int((~flags).sum())})", f"flagged ({int(flags.sum())})"])
    if truly_wrong is not None:
        ax.hist(s[np.asarray(truly_wrong, dtype=bool)], bins=bins, histtype="step", color=_BLUE, linewidth=1.5,
                label="truly wrong label")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel(score_name)
    ax.set_ylabel("examples (log scale)")
    ax.legend(fontsize=8)
    return _png(fig)


def thumbnail_png(image: np.ndarray, size: int = 64) -> bytes:
    """A uint8 HWC (or HW) image as a PNG, scaled so its longer side is ``size`` (nearest for small images)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr.astype(np.uint8))
    scale = size / max(img.size)
    new = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    img = img.resize(new, Image.NEAREST if scale >= 1 else Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
