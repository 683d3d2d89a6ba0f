"""Trigger shapes as signed-distance functions (SDFs).

One SDF per shape, written once for NumPy and torch alike, gives both the hard mask used
when poisoning (``sdf <= 0``) and the soft, differentiable mask used by the Gumbel-Softmax
trigger search (``sigmoid(-sdf * sharpness)``; BADSEG §5.2, Appendix B).

Coordinates are normalised to the stamp box: x (columns) and y (rows, pointing down) in
[-1, 1]; distances are in the same units (1 = half the stamp width).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "logo")


def _xp(a: Any) -> Any:
    return torch if isinstance(a, torch.Tensor) else np


def _sqrt(v: Any) -> Any:
    """Square root whose torch gradient stays finite at 0 (a stamp centre on a pixel centre)."""
    return v.clamp_min(1e-12).sqrt() if isinstance(v, torch.Tensor) else np.sqrt(v)


def _circle(x: Any, y: Any, cx: float, cy: float, r: float) -> Any:
    return _sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _ellipse(x: Any, y: Any, a: float, b: float) -> Any:
    # First-order approximation: exact on the boundary, monotone inside and out.
    return (_sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * min(a, b)


def _triangle(x: Any, y: Any) -> Any:
    """Upward triangle with apex (0, -1) and base y = 1 (corners (+-1, 1))."""
    xp = _xp(x)
    k = 1.0 / math.sqrt(5.0)
    base = y - 1.0
    left = (-2.0 * (x + 1.0) - (y - 1.0)) * k
    right = (2.0 * (x - 1.0) - (y - 1.0)) * k
    return xp.maximum(base, xp.maximum(left, right))


def _logo(x: Any, y: Any) -> Any:
    """A bat-like emblem drawn from ellipses and circles (our own, not any artwork).

    Wide elliptical body, scalloped lower edge, a head with two ears between the wings.
    """
    xp = _xp(x)
    body = _ellipse(x, y, 1.0, 0.45)
    for cx, cy, r in ((-0.5, 0.55, 0.28), (0.5, 0.55, 0.28), (0.0, 0.68, 0.2)):
        body = xp.maximum(body, -_circle(x, y, cx, cy, r))  # scallops cut from the bottom
    for cx in (-0.55, 0.55):
        body = xp.maximum(body, -_circle(x, y, cx, -0.55, 0.35))  # dips between wings and head
    head = _ellipse(x, y + 0.1, 0.22, 0.3)
    ears = _triangle((x - 0.12 * xp.sign(x)) / 0.09, (y + 0.55) / 0.2) * 0.09
    return xp.minimum(body, xp.minimum(head, ears))


_SDF = {
    "circle": lambda x, y: _circle(x, y, 0.0, 0.0, 1.0),
    "square": lambda x, y: _xp(x).maximum(abs(x), abs(y)) - 1.0,
    "triangle": _triangle,
    "logo": _logo,
}


def signed_distance(shape: str, x: Any, y: Any) -> Any:
    """SDF of ``shape`` at normalised coordinates (NumPy arrays or torch tensors)."""
    if shape not in _SDF:
        raise ValueError(f"unknown trigger shape {shape!r}; valid shapes: {', '.join(SHAPES)}")
    return _SDF[shape](x, y)


def _grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size_px, dtype=np.float64) + 0.5) / size_px * 2.0 - 1.0
    return c[None, :], c[:, None]


def shape_mask(shape: str, size_px: int) -> np.ndarray:
    """Hard mask, bool (size_px, size_px): pixel centres with SDF <= 0."""
    if size_px < 1:
        raise ValueError(f"trigger size must be at least 1 px, got {size_px}")
    x, y = _grid(size_px)
    mask = signed_distance(shape, x, y) <= 0
    if not mask.any():  # a 1-2 px stamp of a thin shape: keep the centre pixel
        mask[size_px // 2, size_px // 2] = True
    return mask


def soft_shape_mask(shape: str, x: torch.Tensor, y: torch.Tensor, half_size_px: torch.Tensor,
                    sharpness: float = 1.0) -> torch.Tensor:
    """Differentiable mask in [0, 1]: ``sigmoid(-sdf_px * sharpness)``.

    Args:
        x, y: pixel offsets from the stamp centre, any broadcastable shape.
        half_size_px: half the stamp width in pixels (tensor, may carry gradients).
        sharpness: 1/edge width in pixels.
    """
    d = signed_distance(shape, x / half_size_px, y / half_size_px) * half_size_px
    return torch.sigmoid(-d * sharpness)
