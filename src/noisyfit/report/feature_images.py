"""Feature rows that are really images (scikit-learn's digits: 64 values = an 8x8 grey image) as thumbnails.

The setting (``noisyfit audit --feature-image``):

* ``auto`` (default): a row is an image when its length is a square number s*s with s >= 8 and no value
  is negative (pixel intensities are not; standardised or signed features are); the shape is s x s, grey;
* ``HxW`` or ``HxWxC`` (C = 1 or 3): that shape, the values in row-major order, channels last;
* ``off``: always a table of feature values.

Values are scaled to 0-255 with one range for the whole data set (its min and max), so thumbnails of
different rows compare. Grey images are drawn as ink on paper (larger value = darker), as scikit-learn
draws its digits; colour ones as they are.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from noisyfit.data.labeled import DataError

MIN_AUTO_SIDE = 8


class FeatureImageError(DataError):
    """A --feature-image setting that is malformed or does not fit the data."""


@dataclass
class FeatureImages:
    """Rows of a feature matrix drawn as uint8 images on demand (``images[i]`` is row i as H x W or H x W x C)."""

    x: np.ndarray
    shape: tuple[int, ...]
    low: float
    high: float
    rule: str  # one sentence for the report: why the rows are drawn as images, and how

    @property
    def note(self) -> str:
        """The rule and the value scale, for the report."""
        ends = "white to black" if len(self.shape) == 2 else "0 to 255 per channel"
        return f"{self.rule} Values {self.low:g} to {self.high:g} (the data set's range) are drawn {ends}."

    def __getitem__(self, i: int) -> np.ndarray:
        row = np.asarray(self.x[int(i)], dtype=np.float64)
        span = self.high - self.low
        scaled = (row - self.low) / span if span > 0 else np.zeros_like(row)
        img = np.clip(np.rint(255.0 * scaled), 0, 255).astype(np.uint8).reshape(self.shape)
        return 255 - img if len(self.shape) == 2 else img  # grey: ink on paper


def parse_shape(setting: str) -> tuple[int, ...]:
    """``HxW`` / ``HxWxC`` as a shape (C = 1 gives a grey H x W); FeatureImageError when malformed."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*(?:[xX]\s*([13]))?\s*", setting)
    if m is None:
        raise FeatureImageError(f"--feature-image {setting!r}: use auto, off, HxW (e.g. 8x8) or HxWxC with C = 1 "
                                "or 3 (e.g. 32x32x3).")
    h, w = int(m[1]), int(m[2])
    return (h, w) if m[3] in (None, "1") else (h, w, 3)


def feature_images(x: np.ndarray | None, setting: str = "auto") -> FeatureImages | None:
    """The rows of ``x`` (N x D feature values) as images under ``setting``, or None to show a table."""
    if x is None or setting == "off":
        return None
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        return None
    d = x.shape[1]
    low, high = float(np.min(x)), float(np.max(x))
    if setting == "auto":
        side = math.isqrt(d)
        if side * side != d or side < MIN_AUTO_SIDE or low < 0:
            return None
        rule = (f"Rows drawn as {side}x{side} grey images: {d} features is a square number (side >= "
                f"{MIN_AUTO_SIDE}) and no value is negative (the auto rule; the setting off shows the values, "
                f"HxW sets another shape: --feature-image, or write_report's feature_image).")
        return FeatureImages(x, (side, side), low, high, rule)
    shape = parse_shape(setting)
    if math.prod(shape) != d:
        raise FeatureImageError(f"--feature-image {setting}: {'x'.join(map(str, shape))} = {math.prod(shape)} "
                                f"values, but the rows have {d} features.")
    rule = f"Rows drawn as {'x'.join(map(str, shape))} images (feature image setting {setting})."
    return FeatureImages(x, shape, low, high, rule)
