"""Placements: where trigger stamps go (DESIGN §2 "placement").

Every placement returns whole stamps inside the image. Eligibility is exact and vectorised:
a summed-area table gives, for every top-left corner, how many pixels of a mask fall in
the S x S box there, so "the stamp box lies inside the object" is ``count == S*S`` and
"the stamp box avoids the victim" is ``count == 0``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from badseg.registry import Registry
from badseg.triggers import Stamp

PLACEMENTS: Registry = Registry("placement")

#: place(region, avoid, size, quantity, rng) -> stamps, or a skip reason.
Placement = Callable[[np.ndarray, np.ndarray, int, int, np.random.Generator], "list[Stamp] | str"]


def box_counts(mask: np.ndarray, box_h: int, box_w: int | None = None) -> np.ndarray:
    """Number of True pixels of ``mask`` (HxW) in every box_h x box_w box, indexed by the
    box's top-left corner: shape (H - box_h + 1, W - box_w + 1) (empty if the box is larger)."""
    box_w = box_h if box_w is None else box_w
    h, w = mask.shape
    if box_h > h or box_w > w:
        return np.zeros((0, 0), dtype=np.int64)
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=sat[1:, 1:])
    return sat[box_h:, box_w:] - sat[:-box_h, box_w:] - sat[box_h:, :-box_w] + sat[:-box_h, :-box_w]


def _pick(eligible: np.ndarray, size: int, quantity: int, rng: np.random.Generator,
          first: tuple[float, float] | None = None) -> list[Stamp] | None:
    """Choose ``quantity`` non-overlapping top-left corners from ``eligible`` (modified).

    The first stamp goes nearest to ``first`` (a centre point) when given, else at random.
    """
    stamps: list[Stamp] = []
    for k in range(quantity):
        cand = np.flatnonzero(eligible)
        if cand.size == 0:
            return None
        if k == 0 and first is not None:
            rows, cols = np.divmod(cand, eligible.shape[1])
            off = (size - 1) / 2
            d2 = (rows + off - first[0]) ** 2 + (cols + off - first[1]) ** 2
            idx = cand[int(np.argmin(d2))]
        else:
            idx = cand[int(rng.integers(cand.size))]
        top, left = divmod(int(idx), eligible.shape[1])
        stamps.append(Stamp(top, left, size))
        eligible[max(0, top - size + 1): top + size, max(0, left - size + 1): left + size] = False
    return stamps


@PLACEMENTS.register("centre")
def centre(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
           rng: np.random.Generator) -> list[Stamp] | str:
    """First stamp at the region's centre (the inside position nearest its centroid, so
    non-convex objects work), the others at random inside the region, all non-overlapping."""
    eligible = box_counts(region, size) == size * size
    rows, cols = np.nonzero(region)
    if rows.size == 0:
        return "empty region"
    stamps = _pick(eligible, size, quantity, rng, first=(rows.mean(), cols.mean()))
    return stamps if stamps else f"no room for {quantity} stamp(s) of {size}px inside the region"


@PLACEMENTS.register("random_inside")
def random_inside(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                  rng: np.random.Generator) -> list[Stamp] | str:
    """Stamps uniformly at random, whole box inside the region, non-overlapping (also B2B's
    scatter over the victim stuff region)."""
    stamps = _pick(box_counts(region, size) == size * size, size, quantity, rng)
    return stamps if stamps else f"no room for {quantity} stamp(s) of {size}px inside the region"


@PLACEMENTS.register("random_outside")
def random_outside(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                   rng: np.random.Generator) -> list[Stamp] | str:
    """Stamps at random positions whose box touches no ``avoid`` pixel (the victim class)."""
    stamps = _pick(box_counts(avoid, size) == 0, size, quantity, rng)
    return stamps if stamps else f"no room for {quantity} stamp(s) of {size}px outside the victim"
