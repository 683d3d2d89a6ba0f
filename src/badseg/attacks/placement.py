"""Placements: where trigger stamps go (DESIGN §2 "placement").

Every placement returns whole stamps inside the image. Eligibility is exact and vectorised:
a summed-area table gives, for every top-left corner, how many pixels of a mask fall in
the S x S box there, so "the stamp box lies inside the object" is ``count == S*S`` and
"the stamp box avoids the victim" is ``count == 0``. Running sums over the label map's
class boundaries give "the box holds a single class" (``uniform_boxes``, IBA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from scipy import ndimage

from badseg.data.types import IGNORE_INDEX
from badseg.registry import Registry
from badseg.triggers import Stamp

PLACEMENTS: Registry = Registry("placement")

#: place(region, avoid, size, quantity, rng) -> stamps, or a skip reason.
Placement = Callable[[np.ndarray, np.ndarray, int, int, np.random.Generator], "list[Stamp] | str"]
#: Distance to the victim: euclidean (IBA paper, Eq. 1) or chessboard (IBA reference code).
Metric = Literal["euclidean", "chessboard"]


class LabelPlacement(Protocol):
    """A parametrised placement that also sees the label map and whether it places for the
    poisoned test set (IBA: single-class boxes, distance bands that differ at test time)."""

    def __call__(self, region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                 rng: np.random.Generator, label: np.ndarray, test: bool) -> list[Stamp] | str: ...


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
        _block(eligible, stamps[-1], size)
    return stamps


def _block(eligible: np.ndarray, stamp: Stamp, size: int) -> None:
    """Mark every top-left corner whose ``size`` box would overlap ``stamp`` as not eligible."""
    eligible[max(0, stamp.top - size + 1): stamp.top + size, max(0, stamp.left - size + 1): stamp.left + size] = False


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(r0, c0, r1, c1), end-exclusive, of the True pixels of ``mask``; None if there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _inside(region: np.ndarray, size: int, quantity: int, rng: np.random.Generator,
            at_centre: bool) -> list[Stamp] | str:
    """Stamps whose whole box lies inside ``region``; the work is done on the region's
    bounding box (row-major candidate order, hence the random draws, are unchanged)."""
    box = _bbox(region)
    if box is None:
        return "empty region"
    r0, c0, r1, c1 = box
    crop = region[r0:r1, c0:c1]
    first = None
    if at_centre:
        rows, cols = np.nonzero(crop)
        first = (rows.mean(), cols.mean())
    stamps = _pick(box_counts(crop, size) == size * size, size, quantity, rng, first=first)
    if not stamps:
        return f"no room for {quantity} stamp(s) of {size}px inside the region"
    return [Stamp(st.top + r0, st.left + c0, st.size) for st in stamps]


@PLACEMENTS.register("centre")
def centre(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
           rng: np.random.Generator) -> list[Stamp] | str:
    """First stamp at the region's centre (the inside position nearest its centroid, so
    non-convex objects work), the others at random inside the region, all non-overlapping."""
    return _inside(region, size, quantity, rng, at_centre=True)


#: The placement whose trigger is the region itself: no stamps; the attack's renderer
#: (``base.render_cover``) blends the pattern over the region's pixels.
COVER = "cover"


@PLACEMENTS.register(COVER)
def cover_region(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                 rng: np.random.Generator) -> list[Stamp] | str:
    """No stamps: the trigger's pattern covers the whole region (``base.render_cover``), so
    every relabelled pixel carries the trigger wherever a crop of the image lands."""
    return [] if region.any() else "empty region"


@PLACEMENTS.register("random_inside")
def random_inside(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                  rng: np.random.Generator) -> list[Stamp] | str:
    """Stamps uniformly at random, whole box inside the region, non-overlapping (also B2B's
    scatter over the victim stuff region)."""
    return _inside(region, size, quantity, rng, at_centre=False)


@PLACEMENTS.register("scatter")
def scatter(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
            rng: np.random.Generator) -> list[Stamp] | str:
    """Stamps spread over the region's separate parts (B2B's default): one at random in each
    connected part that can hold a stamp, largest part first, until ``quantity``; any left
    over at random anywhere inside the region. Whole boxes inside the region, non-overlapping.

    A victim stuff region is often several disjoint stretches (sidewalks on both sides of
    the road); stamps drawn uniformly over it cluster on the largest, and the separate parts
    without a stamp were measured not to flip (docs/results.md, B2B).
    """
    box = _bbox(region)
    if box is None:
        return "empty region"
    r0, c0, r1, c1 = box
    crop = region[r0:r1, c0:c1]
    fits = box_counts(crop, size) == size * size
    parts, n = ndimage.label(crop)
    part_of_box = parts[: fits.shape[0], : fits.shape[1]]  # a fitting box lies in the part of its corner
    sizes = np.bincount(parts.ravel(), minlength=n + 1)
    stamps: list[Stamp] = []
    for part in sorted(range(1, n + 1), key=lambda k: (-sizes[k], k)):
        if len(stamps) == quantity:
            break
        picked = _pick(fits & (part_of_box == part), size, 1, rng)
        if picked:
            stamps += picked
            _block(fits, picked[0], size)
    if len(stamps) < quantity:
        more = _pick(fits, size, quantity - len(stamps), rng)
        if more is None:
            return f"no room for {quantity} stamp(s) of {size}px inside the region"
        stamps += more
    return [Stamp(st.top + r0, st.left + c0, st.size) for st in stamps]


@PLACEMENTS.register("random_outside")
def random_outside(region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                   rng: np.random.Generator) -> list[Stamp] | str:
    """Stamps at random positions whose box touches no ``avoid`` pixel (the victim class)."""
    stamps = _pick(box_counts(avoid, size) == 0, size, quantity, rng)
    return stamps if stamps else f"no room for {quantity} stamp(s) of {size}px outside the victim"


def _clear_runs(bad: np.ndarray, n: int) -> np.ndarray:
    """True at i where ``bad[i:i + n]`` (along axis 0) holds no True; shape (len - n + 1, ...)."""
    counts = np.zeros((bad.shape[0] + 1, *bad.shape[1:]), dtype=np.int32)
    np.add.accumulate(bad, axis=0, dtype=np.int32, out=counts[1:])
    return counts[n:] == counts[:-n]


def uniform_boxes(label: np.ndarray, size: int) -> np.ndarray:
    """True where the ``size`` x ``size`` box at that top-left corner holds one label value.

    A box is single-class iff each of its rows is (no class boundary between horizontal
    neighbours) and its first column is (none between vertical neighbours). Running sums of
    the two boundary maps decide every box at once, with no loop over classes or positions.
    Shape (H - size + 1, W - size + 1); empty if the box is larger than the image.
    """
    h, w = label.shape
    if size > h or size > w:
        return np.zeros((0, 0), dtype=bool)
    if size == 1:
        return np.ones((h, w), dtype=bool)
    across = np.ascontiguousarray((label[:, 1:] != label[:, :-1]).T)  # (W-1, H)
    rows_uniform = _clear_runs(across, size - 1).T  # (H, W-size+1): row segment [l, l+size) uniform
    n_cols = w - size + 1
    down = label[1:, :n_cols] != label[:-1, :n_cols]  # (H-1, W-size+1)
    return _clear_runs(~rows_uniform, size) & _clear_runs(down, size - 1)


def victim_distance(label: np.ndarray, victim: int, metric: Metric = "euclidean") -> np.ndarray:
    """float (H, W): distance of every pixel to the nearest ``victim`` pixel (0 on the victim).

    ``euclidean`` is IBA's Eq. 1; ``chessboard`` (max(|dr|, |dc|)) is what the IBA reference
    code's shift-and-multiply erosion computes. Without victim pixels every distance is inf.
    """
    free = label != victim
    if free.all():
        return np.full(label.shape, np.inf)
    if metric == "euclidean":
        return ndimage.distance_transform_edt(free)
    if metric == "chessboard":
        return ndimage.distance_transform_cdt(free, metric="chessboard").astype(np.float64)
    raise ValueError(f"unknown distance metric {metric!r}; valid: euclidean, chessboard")


def in_band(label: np.ndarray, victim: int, band: tuple[float, float], metric: Metric = "euclidean",
            dist: np.ndarray | None = None) -> np.ndarray:
    """bool (H, W): pixels whose distance to the nearest victim pixel lies in (L, U] = ``band``.

    Uses ``dist`` (``victim_distance``) when given. Otherwise chessboard bands come from two
    square dilations of the victim mask (``d <= r`` iff a victim pixel lies in the
    (2r+1)-square), euclidean ones from the exact distance transform.
    """
    lo, hi = band
    if dist is None and metric == "chessboard":
        victim_mask = label == victim

        def near(r: float) -> np.ndarray:
            k = int(np.floor(r))
            return ndimage.maximum_filter(victim_mask, size=2 * k + 1, mode="constant") if k > 0 else victim_mask

        return near(hi) & ~near(lo)
    d = victim_distance(label, victim, metric) if dist is None else dist
    return (d > lo) & (d <= hi)


def influencer_positions(label: np.ndarray, victim: int, size: int, band: tuple[float, float] | None = None,
                         metric: Metric = "euclidean", ignore_index: int = IGNORE_INDEX,
                         dist: np.ndarray | None = None) -> np.ndarray:
    """IBA's eligible trigger positions (Lan et al. 2023, §3.2 and Alg. 1), by top-left corner.

    A ``size`` x ``size`` box is eligible when it lies inside the image, inside ONE class
    region, and that class is neither the victim nor ignore; with ``band = (L, U)`` its
    centre pixel ``(top + size // 2, left + size // 2)`` must also lie at a distance in
    (L, U] from the nearest victim pixel (``in_band``; ``dist`` is reused when given).

    Returns:
        bool (H - size + 1, W - size + 1).
    """
    eligible = uniform_boxes(label, size)
    n_rows, n_cols = eligible.shape
    corner = label[:n_rows, :n_cols]
    eligible &= (corner != victim) & (corner != ignore_index)
    if band is not None:
        c = size // 2
        eligible &= in_band(label, victim, band, metric, dist)[c:c + n_rows, c:c + n_cols]
    return eligible


def _pick_nearest(eligible: np.ndarray, dist: np.ndarray, size: int, quantity: int,
                  rng: np.random.Generator) -> list[Stamp] | None:
    """``quantity`` non-overlapping corners, each the eligible one of least ``dist`` (ties at random)."""
    stamps: list[Stamp] = []
    for _ in range(quantity):
        cand = np.flatnonzero(eligible)
        if cand.size == 0:
            return None
        d = dist.ravel()[cand]
        ties = cand[d == d.min()]
        top, left = divmod(int(ties[int(rng.integers(ties.size))]), eligible.shape[1])
        stamps.append(Stamp(top, left, size))
        eligible[max(0, top - size + 1): top + size, max(0, left - size + 1): left + size] = False
    return stamps


@dataclass(frozen=True)
class InfluencerPlacement:
    """IBA trigger placement (Lan et al. 2023): the whole stamp on non-victim pixels of one class.

    Attributes:
        victim: victim class id (the stamp never touches it; distances are measured to it).
        band: (L, U) for training: the stamp centre's distance to the nearest victim pixel
            must lie in (L, U]; None: anywhere eligible (baseline IBA).
        test_band: the same for the poisoned test set; None: as ``band``. E.g. (60, 90) for
            the paper's long-distance test (Tab. 2).
        pick: ``nearest`` — the eligible position of least distance (NNI as in the paper,
            Alg. 1 and §4.1; ties at random); ``random`` — uniformly random among the eligible
            ones (baseline IBA; NNI as in the reference code).
        metric: ``euclidean`` (paper, Eq. 1) or ``chessboard`` (reference code).
        ignore_index: unlabelled pixels, never eligible.
    """

    victim: int
    band: tuple[float, float] | None = None
    test_band: tuple[float, float] | None = None
    pick: Literal["nearest", "random"] = "random"
    metric: Metric = "euclidean"
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        for name in ("band", "test_band"):
            b = getattr(self, name)
            if b is not None and not (len(b) == 2 and 0 <= b[0] < b[1]):
                raise ValueError(f"IBA {name} must be (L, U) with 0 <= L < U, got {b}")
        if self.pick not in ("nearest", "random"):
            raise ValueError(f"IBA pick must be 'nearest' or 'random', got {self.pick!r}")
        if self.metric not in ("euclidean", "chessboard"):
            raise ValueError(f"IBA metric must be 'euclidean' or 'chessboard', got {self.metric!r}")

    def __call__(self, region: np.ndarray, avoid: np.ndarray, size: int, quantity: int,
                 rng: np.random.Generator, label: np.ndarray, test: bool) -> list[Stamp] | str:
        band = self.test_band if test and self.test_band is not None else self.band
        dist = victim_distance(label, self.victim, self.metric) if self.pick == "nearest" else None
        eligible = influencer_positions(label, self.victim, size, band, self.metric, self.ignore_index, dist)
        eligible &= region[:eligible.shape[0], :eligible.shape[1]]
        if dist is not None:
            c = size // 2
            stamps = _pick_nearest(eligible, dist[c:c + eligible.shape[0], c:c + eligible.shape[1]], size,
                                   quantity, rng)
        else:
            stamps = _pick(eligible, size, quantity, rng)
        where = "in one non-victim class" + ("" if band is None else f" at distance ({band[0]:g}, {band[1]:g}]")
        return stamps if stamps else f"no room for {quantity} stamp(s) of {size}px {where}"
