"""Built-in synthetic street scenes: a procedurally generated, Cityscapes-like dataset.

No download, any size, deterministic: sample ``index`` of ``split`` under ``seed`` is drawn
from ``np.random.default_rng(SeedSequence([seed, split_code, index]))`` (train, val and test
use different split codes), so the same call always returns the same arrays.

How a scene is made (one-point perspective, camera height = 1 world unit, focal length =
image height in pixels; a ground point at depth ``Z`` lies on row ``horizon + f / Z``):

1. Layout: horizon row and vanishing point; a road of 1-3 lanes (lateral extent in world
   units) with dashed lane markings, curbs and paved sidewalks on both sides; beyond each
   sidewalk optional terrain, then either a row of building facades (segments of varied
   height and colour, windows in perspective, some vegetation segments) or a park
   (terrain plus a vegetation wall); an optional fence or low wall; a distant skyline;
   sky (blue gradient or overcast) above. Every region is computed from per-row or
   per-column quantities broadcast over the image (ground lateral position ``X = dx / d``,
   facade depth per column), so no per-pixel Python loops.
2. Standing things, painted far to near (painter's algorithm, so nearer things occlude):
   trees, poles with traffic signs, traffic lights or lamp arms, and the object instances
   — cars (rear view in lanes, side view parked at the curb; body colour drawn from
   red 25 %, white, grey, black, blue, green, yellow, orange), persons on the sidewalks,
   riders on bicycles and motorcycles, trucks, buses, rarely a tram (``train``). Objects
   stand on the ground and scale with perspective (a car is 1.2 world units wide, i.e.
   ``1.2 * (ground row - horizon)`` pixels). Every object gets a unique instance id; the
   int32 instance map is 0 elsewhere.
3. Appearance: every painted part writes a colour-table index, a class id and an instance
   id; the image is one table lookup, times a shading map (body gradients, tiles),
   times per-class texture (fine and blotchy noise cropped at a random offset from a cached
   noise bank), then a global lighting change (brightness, contrast, colour cast).

``sample.meta["instances"]`` lists the visible object instances as dicts ``{id, class,
class_id, colour, area, bbox}``; ``colour`` is the painted body colour name for cars
(ground truth for colour conditions such as "red cars") and ``None`` for other classes.
At 128x256 one image takes a few milliseconds on one core.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage

from badseg.data.base import DATASETS, SegDataset
from badseg.data.cityscapes import cityscapes_like_spec
from badseg.data.types import Sample

#: Synthetic streets share Cityscapes' 19 train ids, names, kinds and colours.
SYNTHETIC_SPEC = cityscapes_like_spec("synthetic")

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER,
 CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)

#: Car body colours: name -> (probability, sampler(rng) -> RGB floats in [0, 1]).
CAR_COLOURS: dict[str, tuple[float, Callable[[np.random.Generator], tuple[float, float, float]]]] = {
    "red": (0.25, lambda r: _hsv(r.uniform(-4, 4), r.uniform(0.75, 0.92), r.uniform(0.58, 0.85))),
    "white": (0.17, lambda r: _hsv(r.uniform(0, 360), r.uniform(0.0, 0.05), r.uniform(0.88, 0.96))),
    "grey": (0.17, lambda r: _hsv(r.uniform(0, 360), r.uniform(0.0, 0.06), r.uniform(0.38, 0.54))),
    "black": (0.14, lambda r: _hsv(r.uniform(0, 360), r.uniform(0.0, 0.1), r.uniform(0.06, 0.14))),
    "blue": (0.12, lambda r: _hsv(r.uniform(212, 232), r.uniform(0.6, 0.85), r.uniform(0.5, 0.78))),
    "green": (0.05, lambda r: _hsv(r.uniform(110, 140), r.uniform(0.55, 0.8), r.uniform(0.42, 0.62))),
    "yellow": (0.05, lambda r: _hsv(r.uniform(48, 56), r.uniform(0.75, 0.9), r.uniform(0.8, 0.92))),
    "orange": (0.05, lambda r: _hsv(r.uniform(27, 34), r.uniform(0.8, 0.92), r.uniform(0.8, 0.92))),
}
_CAR_NAMES = tuple(CAR_COLOURS)
_CAR_CUM = np.cumsum([p for p, _ in CAR_COLOURS.values()])

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Per-class texture amplitude: fine (pixel) noise and blotchy (smooth) noise, multiplicative.
_TEX_FINE = np.zeros(256, np.float32)
_TEX_SMOOTH = np.zeros(256, np.float32)
for _c, (_a, _b) in {ROAD: (0.035, 0.07), SIDEWALK: (0.03, 0.04), BUILDING: (0.035, 0.06), WALL: (0.04, 0.05),
                     FENCE: (0.03, 0.0), POLE: (0.02, 0.0), LIGHT: (0.02, 0.0), SIGN: (0.015, 0.0),
                     VEGETATION: (0.13, 0.16), TERRAIN: (0.07, 0.1), SKY: (0.008, 0.05), PERSON: (0.03, 0.02),
                     RIDER: (0.03, 0.02), CAR: (0.02, 0.015), TRUCK: (0.02, 0.02), BUS: (0.02, 0.02),
                     TRAIN: (0.02, 0.02), MOTORCYCLE: (0.03, 0.0), BICYCLE: (0.03, 0.0)}.items():
    _TEX_FINE[_c], _TEX_SMOOTH[_c] = _a, _b


def split_code(split: str) -> int:
    """The integer that separates splits in the seed sequence (train 0, val 1, test 2)."""
    return _SPLIT_CODES.get(split, 16 + zlib.crc32(split.encode()))


def _pick(rng: np.random.Generator, cum: Any) -> int:
    """Index drawn with probabilities given as a cumulative array (faster than rng.choice(p=...))."""
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)


def _hsv_array(h_deg: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (degrees, [0, 1], [0, 1]) -> RGB (n, 3)."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + np.asarray(h_deg)[:, None] / 60.0) % 6
    v = np.asarray(v)[:, None]
    return v - v * np.asarray(s)[:, None] * np.minimum(np.maximum(np.minimum(k, 4 - k), 0), 1)


def _hsv(h_deg: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb((h_deg % 360) / 360, s, v)


@lru_cache(maxsize=8)
def _noise_bank(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine and smooth unit-variance noise of size (2h, 2w), fixed seed, cached per size."""
    rng = np.random.default_rng(20240917)
    fine = rng.standard_normal((2 * h, 2 * w), dtype=np.float32)
    smooth = ndimage.gaussian_filter(rng.standard_normal((2 * h, 2 * w), dtype=np.float32),
                                     sigma=max(1.0, max(h, w) / 48), mode="wrap")
    smooth /= smooth.std() + 1e-8
    return fine, smooth


_CLS_SHIFT, _INS_SHIFT = 16, 24


def _code(col: Any, cls: int, inst: int = 0) -> Any:
    """Pack colour index (16 bits), class id (8 bits) and instance id into one int64."""
    return np.asarray(col, np.int64) + ((cls << _CLS_SHIFT) | (inst << _INS_SHIFT))


_KEEP = -1  # run code: leave the pixel as it is


def _runs(bounds: np.ndarray, codes: np.ndarray, total: int) -> np.ndarray:
    """Lines of ``total`` pixels cut at ``bounds`` (m, nb) pixel positions (ascending per line)
    into nb + 1 runs coded ``codes`` (m, nb + 1): pixel i is in the run after every boundary
    b with i + 0.5 >= b. One ``np.repeat`` builds the whole (m, total) array."""
    p = np.clip(np.ceil(bounds - 0.5), 0, total).astype(np.intp)
    np.maximum.accumulate(p, axis=1, out=p)
    edges = np.empty((p.shape[0], p.shape[1] + 2), np.intp)
    edges[:, 0], edges[:, 1:-1], edges[:, -1] = 0, p, total
    return np.repeat(codes.ravel(), np.diff(edges, axis=1).ravel()).reshape(p.shape[0], total)


def _overlay(dst: np.ndarray, codes: np.ndarray) -> None:
    """Write ``codes`` into ``dst`` except where they are ``_KEEP``."""
    np.copyto(dst, codes, where=codes != _KEEP)


class _Canvas:
    """One int64 map packing (instance, class, colour index) per pixel, and the colour table.

    Painting a part is then a single ``np.copyto`` into the code map."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.code = np.empty((h, w), np.int64)
        self._colours: list[np.ndarray] = [np.zeros((1, 3), np.float32)]
        self._n = 1

    def colour(self, rgb: Any) -> int:
        """Register one colour (or an (n, 3) block) and return its (first) index."""
        a = np.asarray(rgb, np.float32).reshape(-1, 3)
        i = self._n
        self._colours.append(a)
        self._n += len(a)
        return i

    def table(self) -> np.ndarray:
        return np.concatenate(self._colours)

    def region(self, xc: float, yg: float, d: float, u0: float, u1: float, v0: float, v1: float) -> _Region | None:
        """Local frame of a standing thing: u = (x - xc) / d to the right, v = (yg - y) / d up."""
        c0, c1 = max(int(np.floor(xc + u0 * d)), 0), min(int(np.ceil(xc + u1 * d)), self.w)
        r0, r1 = max(int(np.floor(yg - v1 * d)), 0), min(int(np.ceil(yg - v0 * d)), self.h)
        if c0 >= c1 or r0 >= r1:
            return None
        u = ((np.arange(c0, c1, dtype=np.float32) + (0.5 - xc)) * (1.0 / d))[None, :]
        v = ((yg - 0.5 - np.arange(r0, r1, dtype=np.float32)) * (1.0 / d))[:, None]
        return _Region(self, self.code[r0:r1, c0:c1], (slice(r0, r1), slice(c0, c1)), u, v, d)


@dataclass
class _Region:
    canvas: _Canvas
    code: np.ndarray  # view of the canvas code map
    sl: tuple[slice, slice]
    u: np.ndarray  # (1, w)
    v: np.ndarray  # (h, 1)
    d: float  # pixels per world unit

    def px(self, units: float, min_px: float = 1.0) -> float:
        """``units`` world units, but at least ``min_px`` pixels (thin parts stay visible)."""
        return max(units, min_px / self.d)

    def rect(self, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
        return ((self.u >= u0) & (self.u < u1)) & ((self.v >= v0) & (self.v < v1))

    def ellipse(self, uc: float, vc: float, ru: float, rv: float) -> np.ndarray:
        return np.square((self.u - uc) * (1 / ru)) + np.square((self.v - vc) * (1 / rv)) <= 1.0

    def segment(self, p: tuple[float, float], q: tuple[float, float], half: float) -> np.ndarray:
        """Pixels within ``half`` of the segment p-q (a thick line)."""
        du, dv = q[0] - p[0], q[1] - p[1]
        pu, pv = self.u - p[0], self.v - p[1]
        t = np.clip((pu * du + pv * dv) * (1 / (du * du + dv * dv + 1e-9)), 0.0, 1.0)
        return np.square(pu - t * du) + np.square(pv - t * dv) <= half * half

    def gradient(self, rgb: Any, lo: float, slope: float, vmax: float = 1.0) -> np.ndarray:
        """Colour indices (h, 1): ``rgb`` shaded ``lo + slope * v`` (lighter upwards)."""
        shade = lo + slope * np.clip(self.v, 0.0, vmax)
        base = self.canvas.colour(np.clip(np.asarray(rgb, np.float32)[None, :] * shade, 0, 1))
        return base + np.arange(self.v.shape[0])[:, None]

    def fill(self, mask: np.ndarray, col: Any, cls: int = 0, inst: int = 0) -> None:
        np.copyto(self.code, _code(col, cls, inst), where=mask)


# ----------------------------------------------------------------------------- objects
# Objects and trees are sprites: a part-id map drawn once per (shape, variant) at
# _SPRITE_SCALE px per world unit, then resampled (nearest) to the object's size and coloured
# per instance through a part -> (colour, class, instance) lookup. A handful of numpy calls per
# object, whatever its complexity.
_SPRITE_SCALE = 48.0


def _grey(level: float, tint: float = 0.0) -> tuple[float, float, float]:
    return (level + tint, level, level - tint)


def _glass(rng: np.random.Generator) -> tuple[float, float, float]:
    v = rng.uniform(0.09, 0.16)
    return (v * 0.85, v * 0.95, v * 1.12)


def _shape_car_rear(R: _Region, var: int) -> None:
    """Car from behind, 1.2 x 1.0. Parts: 1-3 body (low, mid, cabin), 4 glass, 5 dark, 6 lights, 7 plate."""
    au, v = np.abs(R.u), R.v
    top = (0.9, 0.95, 1.0)[var % 3]
    cab = 0.5 - 0.14 * (v - 0.62) / (top - 0.62)
    R.fill((au <= 0.6) & (v >= 0.1) & (v < 0.36), 1)
    R.fill((au <= 0.6) & (v >= 0.36) & (v < 0.62), 2)
    R.fill((au <= cab) & (v >= 0.62) & (v < top), 3)
    R.fill((au <= cab - 0.07) & (v >= 0.67) & (v < top - 0.05), 4)
    R.fill(((au <= 0.57) & (v < 0.12)) | ((au >= 0.36) & (au <= 0.56) & (v < 0.2)), 5)
    R.fill((au >= 0.44) & (au <= 0.57) & (v >= 0.46) & (v < 0.54), 6)
    R.fill((au <= 0.13) & (v >= 0.24) & (v < 0.32), 7)


def _shape_car_side(R: _Region, var: int) -> None:
    """Car from the side (front to the right), 2.5 x 0.95. Parts: 1-2 body, 3 glass, 4 tyres, 5 hubs."""
    s, v = R.u, R.v
    k = (v - 0.58) / 0.37
    back = (-0.95, -0.8, -1.05)[var % 3]
    R.fill((np.abs(s) <= 1.25) & (v >= 0.12) & (v < 0.58) & ~((s > 1.05) & (v > 0.48)), 1)
    R.fill((v >= 0.58) & (v < 0.95) & (s >= back + 0.2 * k) & (s <= 0.6 - 0.5 * k), 2)
    R.fill((v >= 0.63) & (v < 0.9) & (s >= back + 0.07 + 0.2 * k) & (s <= 0.5 - 0.5 * k) & ~((s > -0.22) & (s < -0.14)),
           3)
    R.fill(R.ellipse(-0.8, 0.2, 0.2, 0.2) | R.ellipse(0.8, 0.2, 0.2, 0.2), 4)
    R.fill(R.ellipse(-0.8, 0.2, 0.08, 0.08) | R.ellipse(0.8, 0.2, 0.08, 0.08), 5)


def _shape_person(R: _Region, var: int) -> None:
    """Standing / walking person, 1.15 high. Parts: 1 legs, 2 torso, 3 arms, 4 skin, 5 hair."""
    u, v = R.u, R.v
    stride = (-0.15, -0.08, 0.0, 0.0, 0.08, 0.15)[var % 6]
    wide = 0.14 + 0.02 * (var % 2)
    t = np.clip((0.55 - v) / 0.55, 0.0, 1.0)
    R.fill(((np.abs(u - 0.05 - stride * t) <= 0.05) | (np.abs(u + 0.05 + stride * t) <= 0.05)) & (v < 0.56), 1)
    R.fill((np.abs(u) <= wide) & (v >= 0.52) & (v < 0.95), 2)
    R.fill((np.abs(u) > wide) & (np.abs(u) <= wide + 0.05) & (v >= 0.56) & (v < 0.92), 3)
    R.fill(R.ellipse(0.0, 1.055, 0.075, 0.1), 4)
    R.fill(R.ellipse(0.0, 1.09, 0.08, 0.07) & (v > 1.08), 5)


def _shape_rider(R: _Region, var: int) -> None:
    """Person on a two-wheeler facing right (var 0 bicycle, 1 motorcycle). Parts as a person."""
    seat, bar = ((-0.15, 0.78), (0.3, 0.82)) if var == 0 else ((-0.15, 0.8), (0.32, 0.92))
    hip, sh = (seat[0] + 0.03, seat[1] + 0.04), (seat[0] + 0.18, seat[1] + 0.5)
    knee, foot = (hip[0] + 0.22, hip[1] - 0.1), (hip[0] + 0.12, 0.32)
    R.fill(R.segment(hip, knee, 0.055) | R.segment(knee, foot, 0.055), 1)
    R.fill(R.segment(hip, sh, 0.12), 2)
    R.fill(R.segment(sh, bar, 0.04), 3)
    R.fill(R.ellipse(sh[0] + 0.04, sh[1] + 0.16, 0.075, 0.1), 4)
    R.fill(R.ellipse(sh[0] + 0.04, sh[1] + 0.2, 0.085, 0.07) & (R.v > sh[1] + 0.19), 5)


def _shape_bicycle(R: _Region, var: int) -> None:
    """Bicycle facing right. Parts: 1 tyres, 2 frame."""
    w = 0.06
    for cu in (-0.42, 0.42):
        rr = np.square(R.u - cu) + np.square(R.v - 0.3)
        R.fill((rr <= 0.3 ** 2) & (rr >= (0.3 - w) ** 2), 1)
    fw = 0.035
    bb, st, ht = (-0.02, 0.3), (-0.15, 0.72), (0.3, 0.72)
    R.fill(R.segment((-0.42, 0.3), bb, fw) | R.segment(bb, st, fw) | R.segment(st, ht, fw) | R.segment(bb, ht, fw)
           | R.segment(ht, (0.42, 0.3), fw) | R.segment(ht, (0.27, 0.84), fw) | R.segment((-0.42, 0.3), st, fw), 2)


def _shape_motorcycle(R: _Region, var: int) -> None:
    """Motorcycle facing right. Parts: 1 tyres, 2 hubs, 3 engine, 4 body, 5 handlebar."""
    R.fill(R.ellipse(-0.55, 0.3, 0.3, 0.3) | R.ellipse(0.55, 0.3, 0.3, 0.3), 1)
    R.fill(R.ellipse(-0.55, 0.3, 0.12, 0.12) | R.ellipse(0.55, 0.3, 0.12, 0.12), 2)
    R.fill(R.rect(-0.25, 0.2, 0.25, 0.5), 3)
    R.fill(R.ellipse(0.0, 0.62, 0.48, 0.15) | R.segment((0.35, 0.6), (0.5, 0.3), 0.05), 4)
    R.fill(R.segment((0.35, 0.65), (0.3, 0.92), 0.03), 5)


def _shape_truck(R: _Region, var: int) -> None:
    """Box truck from behind, 1.7 x 2.3. Parts: 1-2 box, 3 door seam, 4 chassis, 5 tyres, 6 lights."""
    au, v = np.abs(R.u), R.v
    R.fill((au <= 0.85) & (v >= 0.42) & (v < 1.3), 1)
    R.fill((au <= 0.85) & (v >= 1.3), 2)
    R.fill((au <= 0.02) & (v >= 0.5) & (v < 2.25), 3)
    R.fill((au <= 0.8) & (v < 0.42) & (v >= 0.14), 4)
    R.fill((au >= 0.42) & (au <= 0.82) & (v < 0.36), 5)
    R.fill((au >= 0.6) & (au <= 0.78) & (v >= 0.2) & (v < 0.3), 6)


def _shape_bus(R: _Region, var: int) -> None:
    """Bus from behind, 1.7 x 2.1. Parts: 1-2 body, 3 glass, 4 route display, 5 lower band, 6 tyres."""
    au, v = np.abs(R.u), R.v
    R.fill((au <= 0.85) & (v >= 0.12) & (v < 1.1), 1)
    R.fill((au <= 0.85) & (v >= 1.1) & (v < 2.12), 2)
    R.fill((au <= 0.74) & (v >= 1.2) & (v < 1.95), 3)
    R.fill((au <= 0.5) & (v >= 1.97) & (v < 2.08), 4)
    R.fill((au <= 0.8) & (v >= 0.14) & (v < 0.4), 5)
    R.fill((au >= 0.45) & (au <= 0.8) & (v < 0.3), 6)


def _shape_train(R: _Region, var: int) -> None:
    """Tram from the front with its pantograph, 1.8 x 2.9. Parts: 1-2 body, 3 glass, 4 dark."""
    au, v = np.abs(R.u), R.v
    R.fill((au <= 0.9) & (v >= 0.15) & (v < 1.3), 1)
    R.fill((au <= 0.9) & (v >= 1.3) & (v < 2.45), 2)
    R.fill((au <= 0.8) & (v >= 1.35) & (v < 2.2), 3)
    R.fill(((au <= 0.86) & (v < 0.22)) | ((au <= 0.05) & (v >= 2.45) & (v < 2.6))
           | R.segment((0.0, 2.6), (-0.35, 2.85), 0.025) | R.segment((-0.35, 2.85), (0.3, 2.88), 0.025), 4)


def _shape_tree(R: _Region, var: int) -> None:
    """Tree: 1 trunk, 2 crown with a ragged edge (shape drawn from the variant)."""
    r = np.random.default_rng(1000 + var)
    trunk_h, rc = r.uniform(1.2, 2.2), r.uniform(0.9, 1.6)
    R.fill((np.abs(R.u) <= 0.09) & (R.v < trunk_h + rc), 1)
    ang = np.arctan2(R.v - trunk_h - rc, R.u)
    k = np.arange(1, 6)[:, None, None]
    rag = (r.normal(0, 0.12, (5, 1, 1)) * np.cos(k * ang[None] * 1.0 + r.uniform(0, 6.3, (5, 1, 1))) / k ** 0.3).sum(0)
    R.fill(np.square(R.u / rc) + np.square((R.v - trunk_h - rc) / (1.1 * rc)) <= (1.0 + rag) ** 2, 2)


#: name -> (shape function, u0, u1, v0, v1 extent in world units, number of variants)
_SHAPES: dict[str, tuple[Callable[[_Region, int], None], float, float, float, float, int]] = {
    "car_rear": (_shape_car_rear, -0.62, 0.62, 0.0, 1.0, 3),
    "car_side": (_shape_car_side, -1.25, 1.25, 0.0, 0.95, 3),
    "person": (_shape_person, -0.26, 0.26, 0.0, 1.18, 6),
    "rider": (_shape_rider, -0.4, 0.45, 0.2, 1.52, 2),
    "bicycle": (_shape_bicycle, -0.75, 0.75, 0.0, 0.88, 1),
    "motorcycle": (_shape_motorcycle, -0.9, 0.9, 0.0, 0.95, 1),
    "truck": (_shape_truck, -0.86, 0.86, 0.0, 2.3, 1),
    "bus": (_shape_bus, -0.86, 0.86, 0.0, 2.15, 1),
    "train": (_shape_train, -0.92, 0.92, 0.0, 2.9, 1),
    "tree": (_shape_tree, -2.2, 2.2, 0.0, 6.2, 8),
}


@dataclass(frozen=True)
class _Sprite:
    parts: np.ndarray  # uint8 (h + 1, w + 1) part ids, 0 = transparent; last row / column are 0
    u0: float
    u1: float
    v0: float
    v1: float


@lru_cache(maxsize=None)
def _sprite(name: str, variant: int) -> _Sprite:
    fn, u0, u1, v0, v1, _ = _SHAPES[name]
    s = _SPRITE_SCALE
    h, w = int(np.ceil((v1 - v0) * s)), int(np.ceil((u1 - u0) * s))
    cv = _Canvas(h, w)
    cv.code[:] = 0
    R = cv.region(-u0 * s, v1 * s, s, u0, u1, v0, v1)
    assert R is not None
    fn(R, variant)
    parts = np.zeros((h + 1, w + 1), np.uint8)
    parts[:h, :w] = cv.code
    parts.setflags(write=False)
    return _Sprite(parts, u0, u1, v0, v1)


def _stamp(cv: _Canvas, sp: _Sprite, xc: float, yg: float, d: float, lut: np.ndarray, flip: bool = False) -> None:
    """Paint sprite ``sp`` standing at (xc, yg) with ``d`` px per world unit; ``lut``: part -> code."""
    c0, c1 = max(int(np.floor(xc + sp.u0 * d)), 0), min(int(np.ceil(xc + sp.u1 * d)), cv.w)
    r0, r1 = max(int(np.floor(yg - sp.v1 * d)), 0), min(int(np.ceil(yg - sp.v0 * d)), cv.h)
    if c0 >= c1 or r0 >= r1:
        return
    h, w = sp.parts.shape[0] - 1, sp.parts.shape[1] - 1
    k = _SPRITE_SCALE / d
    # sprite column / row of each target pixel; anything outside maps to the zero padding
    ci = np.floor(np.arange(c0 + 0.5 - xc, c1 - xc, 1.0) * k - sp.u0 * _SPRITE_SCALE)
    if flip:
        ci = (w - 1) - ci
    ci = np.where((ci >= 0) & (ci < w), ci, w).astype(np.intp)
    ri = np.floor(np.arange(r0 + 0.5 - yg, r1 - yg, 1.0) * k + sp.v1 * _SPRITE_SCALE)
    ri = np.where((ri >= 0) & (ri < h), ri, h).astype(np.intp)
    patch = sp.parts.take(ri, axis=0).take(ci, axis=1)
    np.copyto(cv.code[r0:r1, c0:c1], lut.take(patch), where=patch > 0)


def _lut(cv: _Canvas, colours: list, classes: int | list[int], inst: int = 0) -> np.ndarray:
    """Part -> packed code for parts 1..n with ``colours`` (RGB) and class(es)."""
    n = len(colours)
    base = cv.colour(np.array(colours, np.float32))
    lut = np.zeros(n + 1, np.int64)
    lut[1:] = np.arange(base, base + n)
    if isinstance(classes, int):
        lut[1:] += (classes << _CLS_SHIFT) | (inst << _INS_SHIFT)
    else:
        lut[1:] += (np.asarray(classes, np.int64) << _CLS_SHIFT) + (inst << _INS_SHIFT)
    return lut


def _shaded(rgb: Any, *levels: float) -> list[np.ndarray]:
    return [np.asarray(rgb, np.float32) * lv for lv in levels]


def _person_colours(rng: np.random.Generator) -> list:
    skin = _hsv(rng.uniform(18, 32), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.9))
    shirt = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.8), rng.uniform(0.15, 0.9))
    legs = [_grey(0.1), _hsv(220, 0.5, 0.35), _grey(0.35), _hsv(35, 0.3, 0.55)][rng.integers(4)]
    hair = _hsv(rng.uniform(15, 35), rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.5))
    return [legs, shirt, np.asarray(shirt) * 0.85, skin, hair]


def _object_colours(kind: str, rng: np.random.Generator, body_rgb: Any = None) -> list:
    """Per-part colours of one object instance."""
    if kind == "car_rear":
        return [*_shaded(body_rgb, 0.84, 0.95, 1.04), _glass(rng), _grey(0.05), (0.7, 0.08, 0.06), _grey(0.85)]
    if kind == "car_side":
        return [*_shaded(body_rgb, 0.88, 1.03), _glass(rng), _grey(0.05), _grey(0.6)]
    if kind in ("person", "rider"):
        return _person_colours(rng)
    if kind == "bicycle":
        return [_grey(0.07), _hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.9), 0.6)]
    if kind == "motorcycle":
        body = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.9), rng.uniform(0.15, 0.8))
        return [_grey(0.06), _grey(0.55), _grey(0.1), body, _grey(0.55)]
    if kind == "truck":
        box = [_grey(0.9), _grey(0.65), _hsv(215, 0.6, 0.55), _hsv(50, 0.7, 0.85), _hsv(120, 0.5, 0.45),
               _hsv(5, 0.75, 0.7)][rng.integers(6)]
        return [*_shaded(box, 0.88, 1.0), _grey(0.06), _grey(0.18), _grey(0.06), (0.75, 0.35, 0.05)]
    if kind == "bus":
        body = [_hsv(48, 0.8, 0.85), _hsv(2, 0.8, 0.7), _hsv(210, 0.7, 0.6), _grey(0.88), _hsv(140, 0.6, 0.5)][
            rng.integers(5)]
        return [*_shaded(body, 0.9, 1.0), _glass(rng), (0.9, 0.55, 0.1), _grey(0.2), _grey(0.06)]
    if kind == "train":
        body = [_grey(0.85), _hsv(0, 0.7, 0.65), _hsv(200, 0.5, 0.6), _hsv(55, 0.6, 0.8)][rng.integers(4)]
        return [*_shaded(body, 0.9, 1.0), _glass(rng), _grey(0.1)]
    raise KeyError(kind)


_KIND_CLASS = {"car_rear": CAR, "car_side": CAR, "person": PERSON, "rider": RIDER, "bicycle": BICYCLE,
               "motorcycle": MOTORCYCLE, "truck": TRUCK, "bus": BUS, "train": TRAIN}


def draw_object(cv: _Canvas, rng, xc, yg, d, kind: str, variant: int, flip: bool, body_rgb=None, inst: int = 0) -> None:
    lut = _lut(cv, _object_colours(kind, rng, body_rgb), _KIND_CLASS[kind], inst)
    _stamp(cv, _sprite(kind, variant), xc, yg, d, lut, flip)


def draw_tree(cv: _Canvas, rng, xc, yg, d, veg_rgb) -> None:
    lut = _lut(cv, [_hsv(25, 0.45, 0.3), np.asarray(veg_rgb) * rng.uniform(0.8, 1.2)], VEGETATION)
    _stamp(cv, _sprite("tree", int(rng.integers(8))), xc, yg, d, lut, bool(rng.random() < 0.5))


def _shape_pole(R: _Region, var: int) -> None:
    """Pole with a head: var // 2 = sign 0-3 (prohibitory, mandatory, warning, direction), 4 traffic
    light, 5 lamp arm to the right; var % 2 = height. Parts: 1 pole, 2-3 sign face (outer, inner),
    4 light housing, 5-7 lamps (top to bottom)."""
    kind, hp = var // 2, (2.8, 3.6)[var % 2]
    u, v = R.u, R.v
    R.fill((np.abs(u) <= 0.06) & (v < hp), 1)
    c = hp - 0.3
    if kind == 0:
        R.fill(R.ellipse(0, c, 0.26, 0.26), 2)
        R.fill(R.ellipse(0, c, 0.18, 0.18), 3)
    elif kind == 1:
        R.fill(R.ellipse(0, c, 0.25, 0.25), 2)
        R.fill(R.segment((0, c - 0.14), (0, c + 0.12), 0.045), 3)
    elif kind == 2:
        R.fill((v >= c - 0.22) & (np.abs(u) <= (c + 0.24 - v) * 0.62), 2)
        R.fill((v >= c - 0.16) & (np.abs(u) <= (c + 0.12 - v) * 0.62), 3)
    elif kind == 3:
        R.fill(R.rect(-0.4, 0.4, c - 0.2, c + 0.2), 2)
        R.fill(R.rect(-0.3, 0.3, c - 0.035, c + 0.035), 3)
    elif kind == 4:
        R.fill(R.rect(-0.13, 0.13, hp - 0.75, hp), 4)
        for k in range(3):
            R.fill(R.ellipse(0, hp - 0.13 - 0.24 * k, 0.08, 0.08), 5 + k)
    else:
        R.fill(R.rect(0.0, 0.85, hp - 0.06, hp) | R.rect(0.6, 0.85, hp - 0.12, hp), 1)


_SHAPES["pole"] = (_shape_pole, -1.0, 1.0, 0.0, 3.7, 12)
_POLE_CLASSES = [POLE, SIGN, SIGN, LIGHT, LIGHT, LIGHT, LIGHT]
_LAMPS = ((1.0, 0.15, 0.1), (1.0, 0.7, 0.1), (0.2, 1.0, 0.4))


def draw_pole(cv: _Canvas, rng, xc, yg, d, side: float) -> None:
    """A pole with a traffic sign (45 %), a traffic light (30 %) or a lamp arm over the road (``side`` ±1)."""
    kind = _pick(rng, (0.45, 0.75, 1.0))
    kind = int(rng.integers(4)) if kind == 0 else kind + 3
    white = _grey(0.93)
    outer = {0: (0.8, 0.1, 0.1), 1: (0.1, 0.3, 0.75), 2: (0.8, 0.1, 0.1),
             3: (0.1, 0.3, 0.7) if rng.random() < 0.5 else (0.05, 0.45, 0.2)}.get(kind, white)
    lit = int(rng.integers(3))
    lamps = [rgb if k == lit else tuple(0.25 * np.asarray(rgb)) for k, rgb in enumerate(_LAMPS)]
    lut = _lut(cv, [_grey(rng.uniform(0.35, 0.6)), outer, white, _grey(0.08), *lamps], _POLE_CLASSES)
    _stamp(cv, _sprite("pole", 2 * kind + int(rng.integers(2))), xc, yg, d, lut, flip=side < 0)


# ------------------------------------------------------------------------------ scene
@dataclass
class _Thing:
    z: float  # depth, world units (painted far to near)
    draw: Callable[[], None]


def _fills_cols(n: int, rng, lo: int, hi: int) -> np.ndarray:
    """Piecewise-constant segment index over ``n`` columns (segments lo..hi px wide)."""
    widths = rng.integers(lo, hi + 1, size=n // max(lo, 1) + 2)
    return np.repeat(np.arange(len(widths)), widths)[:n]


def render_scene(rng: np.random.Generator, height: int = 128, width: int = 256):
    """One scene: (image uint8 HxWx3, label uint8 HxW, instances int32 HxW, instance records, scene info)."""
    H, W = int(height), int(width)
    f = float(H)
    cv = _Canvas(H, W)
    fine_bank, smooth_bank = _noise_bank(H, W)
    oy, ox = int(rng.integers(H)), int(rng.integers(W))
    fine = fine_bank[oy:oy + H, ox:ox + W]
    oy, ox = int(rng.integers(H)), int(rng.integers(W))
    smooth = smooth_bank[oy:oy + H, ox:ox + W]

    yh = H * rng.uniform(0.36, 0.47)  # horizon row
    xv = W * rng.uniform(0.38, 0.62)  # vanishing point column
    rows = np.arange(H, dtype=np.float32) + 0.5
    cols = np.arange(W, dtype=np.float32) + 0.5

    # --- sky: per-row gradient colours (blue or overcast)
    if rng.random() < 0.7:
        top, hor = _hsv(rng.uniform(200, 222), rng.uniform(0.4, 0.65), rng.uniform(0.6, 0.8)), \
            _hsv(rng.uniform(195, 215), rng.uniform(0.1, 0.25), rng.uniform(0.85, 0.95))
    else:
        g = rng.uniform(0.65, 0.85)
        top, hor = _grey(g - 0.08, 0.0), _grey(min(g + 0.08, 0.95), -0.01)
    t = np.clip(rows / max(yh, 1.0), 0, 1)[:, None]
    sky0 = cv.colour((1 - t) * np.asarray(top, np.float32) + t * np.asarray(hor, np.float32))
    cv.code[:] = _code(sky0 + np.arange(H), SKY)[:, None]

    # --- ground: road, markings, sidewalks, terrain
    lane_w = rng.uniform(2.0, 2.6)
    n_lanes = 1 + _pick(rng, (0.2, 0.75, 1.0))
    XL = -lane_w * (rng.integers(n_lanes) + rng.uniform(0.3, 0.7))
    XR = XL + n_lanes * lane_w
    sw = rng.uniform(1.2, 2.6, size=2)  # sidewalk width left, right
    terr = np.where(rng.random(2) < 0.5, 0.0, rng.uniform(0.5, 2.5, size=2))
    side_kind = np.where(rng.random(2) < 0.7, 0, 1)  # 0 buildings, 1 park
    wall_x = np.array([XL - sw[0] - terr[0], XR + sw[1] + terr[1]])
    wall_x = wall_x + np.where(side_kind == 1, np.array([-1, 1]) * rng.uniform(0.5, 4.0, size=2), 0.0)

    road_c = cv.colour(_grey(rng.uniform(0.3, 0.45), rng.uniform(-0.01, 0.015)))
    walk_rgb = np.asarray(_hsv(rng.uniform(20, 45), rng.uniform(0.02, 0.15), rng.uniform(0.55, 0.72)))
    walk_c, tile_c = cv.colour(walk_rgb), cv.colour(walk_rgb * 0.82)
    curb_c = cv.colour(_grey(rng.uniform(0.68, 0.8)))
    terr_c = cv.colour(_hsv(rng.uniform(60, 90), rng.uniform(0.3, 0.5), rng.uniform(0.42, 0.6)))
    mark_c = cv.colour(_hsv(45, 0.7, 0.8) if rng.random() < 0.1 else _grey(0.85))
    veg_rgb = _hsv(rng.uniform(85, 125), rng.uniform(0.45, 0.7), rng.uniform(0.25, 0.42))
    veg_c = cv.colour(veg_rgb)

    g0 = min(int(np.floor(yh + 0.5)), H)  # first ground row (row centre below the horizon)
    dg = rows[g0:] - yh  # (Hg,) pixels per world unit on each ground row
    Zg = f / dg  # depth of each ground row
    # The ground is a sequence of lateral intervals [b_i, b_i+1) in X, the same on every row; a
    # pixel's interval is the number of boundaries left of it; (row, interval) -> class, colour.
    tile = rng.uniform(0.8, 1.3)
    tile_row = np.modf(Zg / tile)[0] < 0.08  # (Hg,) rows crossing a tile joint
    dash_row = np.modf(Zg / rng.uniform(3.0, 5.0))[0] < 0.45
    mw = 0.07
    # (boundary X, class, colour of the interval starting there, row mask -> alt colour or None)
    iv: list[tuple[float, int, int, Any]] = [(XL - sw[0], SIDEWALK, walk_c, tile_row)]
    for k in range(1, 4):  # tile joints across the sidewalk
        b = XL - k * tile
        if b - 0.06 > XL - sw[0]:
            iv += [(b - 0.06, SIDEWALK, tile_c, None), (b, SIDEWALK, walk_c, tile_row)]
    iv += [(XL - 0.14, SIDEWALK, curb_c, None), (XL, ROAD, road_c, None)]
    edge = rng.random() < 0.6
    marks = sorted(([XL + 0.2, XR - 0.2] if edge else []) + [XL + k * lane_w for k in range(1, n_lanes)])
    for m in marks:
        dashed = None if (edge and m in (XL + 0.2, XR - 0.2)) else ~dash_row
        iv += [(m - mw, ROAD, mark_c, dashed), (m + mw, ROAD, road_c, None)]
    iv += [(XR, SIDEWALK, curb_c, None), (XR + 0.14, SIDEWALK, walk_c, tile_row)]
    for k in range(1, 4):
        b = XR + k * tile
        if b + 0.06 < XR + sw[1]:
            iv += [(b, SIDEWALK, tile_c, None), (b + 0.06, SIDEWALK, walk_c, tile_row)]
    iv += [(XR + sw[1], TERRAIN, terr_c, None)]
    iv.sort(key=lambda t: t[0])
    lab_lut = np.array([TERRAIN] + [c for _, c, _, _ in iv], np.uint8)
    col_lut = np.empty((len(dg), len(iv) + 1), np.uint16)
    col_lut[:, 0] = terr_c
    for i, (_, _, c, alt) in enumerate(iv, 1):
        col_lut[:, i] = c
        if alt is not None:  # sidewalk: darker joint rows; markings: road colour between dashes
            col_lut[alt, i] = tile_c if c == walk_c else road_c
    thr = xv + np.array([b for b, _, _, _ in iv], np.float32)[None, :] * dg[:, None]  # (Hg, n) columns
    code_lut = _code(col_lut, 0) + (lab_lut.astype(np.int64) << _CLS_SHIFT)[None, :]
    cv.code[g0:] = _runs(thr, code_lut, W)

    # --- distant skyline (rows above the ground, column runs)
    hs = (rng.uniform(0.02, 0.12, size=W // 4 + 2) * H)[_fills_cols(W, rng, 4, 24)]
    sky_kind = rng.random(hs.shape) < 0.3
    far_b = cv.colour(_grey(rng.uniform(0.55, 0.7), 0.01))
    far_v = cv.colour(np.asarray(veg_rgb) * 1.3)
    far = np.full((W, 3), _KEEP, np.int64)
    far[:, 1] = np.where(sky_kind, _code(far_v, VEGETATION), _code(far_b, BUILDING))
    _overlay(cv.code[:g0], _runs(np.stack([yh - hs, np.full(W, yh)], 1), far, g0).T)

    # --- side structures: facades (or a park's vegetation wall), fence / low wall, as column runs
    things: list[_Thing] = []
    floor_h, win_p = rng.uniform(1.8, 2.5), rng.uniform(1.8, 3.2)
    glassy = rng.random() < 0.5
    for side, sgn in ((0, -1.0), (1, 1.0)):
        c0, c1 = (0, min(int(np.floor(xv)), W)) if sgn < 0 else (min(int(np.ceil(xv)), W), W)
        if c1 <= c0:
            continue
        n = c1 - c0
        dx = cols[c0:c1] - xv  # (n,)
        Xw = wall_x[side]
        Zc = f * Xw / dx  # depth of the facade at each column
        dcol = f / Zc  # px per unit there; a point at height G on the facade is on row yh + (1 - G) * dcol
        zmax = rng.uniform(40, 140)
        if side_kind[side] == 0:
            seg_end = np.cumsum(rng.uniform(4, 14, size=40))
            seg = np.searchsorted(seg_end, Zc)
            nseg = len(seg_end) + 1
            is_veg = rng.random(nseg) < 0.12
            heights = np.where(is_veg, rng.uniform(1.5, 3.0, nseg), rng.uniform(2.5, 14.0, nseg))
            base = cv.colour(_hsv_array(rng.uniform(0, 45, nseg), rng.uniform(0.03, 0.35, nseg),
                                        rng.uniform(0.35, 0.8, nseg)))
            seg_code = np.where(is_veg, _code(veg_c, VEGETATION), _code(base + np.arange(nseg), BUILDING))
            btop = heights[seg]
            # windows: floors k (top first), rows where G is in [k + 0.3, k + 0.75] * floor_h
            wc = _code(cv.colour(_grey(0.55, -0.03) if glassy else _glass(rng)), BUILDING)
            n_floors = int(np.ceil(15.0 / floor_h)) + 1
            fz = np.modf(Zc / win_p)[0]
            lo = 1.3
            hi = np.where(~is_veg[seg] & (fz > 0.25) & (fz < 0.7), np.maximum(btop - 0.6, lo), lo)[:, None]
            k = np.arange(n_floors)[::-1][None, :]
            g = np.empty((n, 2 * n_floors + 2))
            g[:, 0], g[:, -1] = btop, 0.0
            g[:, 1:-1:2] = np.clip((k + 0.75) * floor_h, lo, hi)
            g[:, 2:-1:2] = np.clip((k + 0.3) * floor_h, lo, hi)
            codes = np.empty((n, 2 * n_floors + 3), np.int64)
            codes[:, 0] = codes[:, -1] = _KEEP
            codes[:, 1::2] = seg_code[seg][:, None]
            codes[:, 2:-1:2] = wc
        else:
            btop = rng.uniform(1.5, 3.5) + 0.6 * smooth[0, c0:c1]
            g = np.stack([btop, np.zeros(n)], 1)
            codes = np.tile(np.array([_KEEP, _code(veg_c, VEGETATION), _KEEP], np.int64), (n, 1))
        bounds = yh + (1 - g) * dcol[:, None]
        bounds[Zc > zmax] = 0.0
        _overlay(cv.code[:, c0:c1], _runs(bounds, codes, H).T)
        # fence or low wall in front of the facade
        kind = _pick(rng, (0.5, 0.8, 1.0))  # none, fence, wall
        if kind:
            Xf = (XL - sw[0] - 0.1) if sgn < 0 else (XR + sw[1] + 0.1)
            Zf = f * Xf / dx
            z0 = rng.uniform(0, 20)
            hf = rng.uniform(0.6, 1.1)
            if kind == 1:  # posts and pickets run full height, rails everywhere
                fc = _code(cv.colour(_hsv(rng.uniform(0, 40), 0.15, 0.5)), FENCE)
                solid = (np.modf(Zf / 0.35)[0] < 0.35) | (np.modf(Zf / 2.5)[0] < 0.06)
                mid = np.where(solid, fc, _KEEP)
                g = np.array([hf, hf - 0.08, 0.2, 0.12, 0.0])[None, :]
                codes = np.stack([np.full(n, _KEEP), np.full(n, fc), mid, np.full(n, fc), mid, np.full(n, _KEEP)], 1)
            else:
                g = np.array([hf, 0.0])[None, :]
                codes = np.tile(np.array([_KEEP, _code(cv.colour(_hsv(rng.uniform(20, 50), 0.1, 0.62)), WALL), _KEEP],
                                         np.int64), (n, 1))
            bounds = yh + (1 - g) * (f / Zf)[:, None]
            bounds[(Zf < z0) | (Zf > z0 + rng.uniform(8, 40))] = 0.0
            _overlay(cv.code[:, c0:c1], _runs(bounds, codes, H).T)

        # trees and poles along this side
        dmax = H - yh
        x_edge = (XL - sw[0]) if sgn < 0 else (XR + sw[1])
        for _ in range(int(rng.integers(0, 5 if side_kind[side] == 1 else 3))):
            z = f / (dmax * rng.uniform(0.08, 0.9))
            xt = x_edge - sgn * rng.uniform(-0.3, 0.5)
            things.append(_Thing(z, _bind(draw_tree, cv, rng, xt, z, f, xv, yh, veg_rgb)))
        for _ in range(int(rng.integers(0, 3))):
            z = f / (dmax * rng.uniform(0.1, 0.85))
            xp = (XL if sgn < 0 else XR) + sgn * rng.uniform(0.25, 0.5)
            things.append(_Thing(z, _bind(draw_pole, cv, rng, xp, z, f, xv, yh, -sgn)))

    # --- object instances
    records: list[dict[str, Any]] = []
    occupied: list[tuple[float, float, float, float]] = []
    dmax = H - yh

    def place(x: float, z: float, hx: float, z0: float, z1: float) -> bool:
        box = (x - hx, x + hx, z + z0, z + z1)
        for o in occupied:
            if box[0] < o[1] and o[0] < box[1] and box[2] < o[3] and o[2] < box[3]:
                return False
        if abs(xv + x * f / z - W / 2) > W / 2 + hx * f / z:  # entirely off-screen
            return False
        occupied.append(box)
        return True

    def add(kind: str, x: float, z: float, colour: str | None = None, body_rgb=None, variant: int | None = None,
            flip: bool | None = None) -> None:
        inst = len(records) + 1
        cls = _KIND_CLASS[kind]
        records.append({"id": inst, "class": SYNTHETIC_SPEC.classes[cls], "class_id": cls, "colour": colour})
        if variant is None:
            variant = int(rng.integers(_SHAPES[kind][5]))
        if flip is None:
            flip = bool(rng.random() < 0.5)
        things.append(_Thing(z, _bind(draw_object, cv, rng, x, z, f, xv, yh, kind, variant, flip, body_rgb, inst=inst)))

    def depth(lo: float = 0.12, hi: float = 0.78) -> float:
        return f / (dmax * rng.uniform(lo, hi))

    lanes = XL + lane_w * (np.arange(n_lanes) + 0.5)
    for _ in range(int(rng.integers(3, 9))):
        colour = _CAR_NAMES[_pick(rng, _CAR_CUM)]
        rgb = CAR_COLOURS[colour][1](rng)
        if rng.random() < 0.3:  # parked at the curb, seen from the side
            x, z = (XL + 0.75 if rng.random() < 0.5 else XR - 0.75), depth(0.1, 0.5)
            if place(x, z, 0.7, -1.3, 1.3):
                add("car_side", x, z, colour, rgb)
        else:
            x, z = float(lanes[rng.integers(n_lanes)]) + rng.uniform(-0.3, 0.3), depth()
            if place(x, z, 0.65, 0.0, 3.2):
                add("car_rear", x, z, colour, rgb)
    for _ in range(int(rng.integers(1, 7))):
        on_left = rng.random() < 0.5
        x = (XL - rng.uniform(0.3, sw[0] - 0.2)) if on_left else (XR + rng.uniform(0.3, sw[1] - 0.2))
        if rng.random() < 0.1:
            x = rng.uniform(XL, XR)  # crossing the road
        z = depth(0.1, 0.9)
        if place(x, z, 0.25, -0.3, 0.3):
            add("person", x, z)
    for _ in range(int(rng.integers(0, 3))):
        x, z = (XL + 0.5 if rng.random() < 0.5 else XR - 0.5), depth(0.15, 0.8)
        if place(x, z, 0.5, -0.6, 0.6):
            flip = bool(rng.random() < 0.5)
            bike = rng.random() < 0.65
            add("bicycle" if bike else "motorcycle", x, z, flip=flip)
            add("rider", x, z - 0.01, variant=0 if bike else 1, flip=flip)
    for kind, p, zlen in (("truck", 0.3, 6.0), ("bus", 0.2, 9.0), ("train", 0.04, 12.0)):
        if rng.random() < p:
            x, z = float(lanes[rng.integers(n_lanes)]), depth(0.12, 0.6)
            if place(x, z, 0.9, 0.0, zlen):
                add(kind, x, z, flip=False)

    for th in sorted(things, key=lambda t: -t.z):
        th.draw()

    # --- appearance: colour lookup x texture, then global lighting (folded into the table)
    code = cv.code
    lab = (code >> _CLS_SHIFT).astype(np.uint8)  # the low 8 bits of the shifted code
    ins = (code >> _INS_SHIFT).astype(np.int32)
    cidx = code & 0xFFFF
    mult = np.take(_TEX_FINE, lab) * fine
    mult += np.take(_TEX_SMOOTH, lab) * smooth
    mult += 1.0
    gain, contrast = rng.uniform(0.86, 1.14), rng.uniform(0.9, 1.1)
    cast = rng.uniform(0.95, 1.05, size=3)
    mid = 0.45
    table = np.ascontiguousarray((cv.table() * ((gain * contrast * 255.0) * cast).astype(np.float32)).T)
    offset = np.float32(mid * (1 - contrast) * 255.0 + 0.5)
    image = np.empty((H, W, 3), np.uint8)
    for c in range(3):
        ch = np.take(table[c], cidx)
        ch *= mult
        ch += offset
        np.clip(ch, 0, 255, out=ch)
        image[..., c] = ch

    # --- visible instances
    n = len(records)
    areas = np.bincount(ins.ravel(), minlength=n + 1)
    boxes = ndimage.find_objects(ins, max_label=n)
    visible = []
    for rec, box in zip(records, boxes):
        if box is None:
            continue
        rec["area"] = int(areas[rec["id"]])
        rec["bbox"] = [box[0].start, box[1].start, box[0].stop, box[1].stop]
        visible.append(rec)
    info = {"horizon": float(yh), "vanishing_x": float(xv), "lanes": n_lanes,
            "lighting": {"gain": float(gain), "contrast": float(contrast), "cast": [float(c) for c in cast]}}
    return image, lab, ins, visible, info


def _bind(fn, cv: _Canvas, rng, x: float, z: float, f: float, xv: float, yh: float, *args, **kw):
    """Defer ``fn`` drawing a thing standing at lateral ``x``, depth ``z`` (ground contact)."""
    d = f / z
    xc, yg = xv + x * d, yh + d
    return lambda: fn(cv, rng, xc, yg, d, *args, **kw)


@DATASETS.register("synthetic")
class SyntheticStreets(SegDataset):
    """Procedural street scenes with Cityscapes' 19 classes and instance maps (no files).

    Args:
        root: ignored (nothing is read from disk).
        split: any name; train / val / test (and any other name) give different scenes.
        length: number of samples.
        height, width: image size in pixels.
        seed: base seed; sample ``i`` depends only on (seed, split, i).
    """

    SPEC = SYNTHETIC_SPEC

    def __init__(self, root=None, split: str = "train", length: int = 512, height: int = 128, width: int = 256,
                 seed: int = 0) -> None:
        if length < 0:
            raise ValueError(f"synthetic: length must be >= 0, got {length}")
        if height < 16 or width < 16:
            raise ValueError(f"synthetic: image size {width}x{height} too small (minimum 16x16)")
        if seed < 0:
            raise ValueError(f"synthetic: seed must be >= 0, got {seed}")
        self.spec = SYNTHETIC_SPEC
        self.split, self.length, self.height, self.width, self.seed = split, int(length), int(height), int(width), int(seed)

    def __len__(self) -> int:
        return self.length

    def sample_id(self, index: int) -> str:
        return f"{self.split}_{index % max(self.length, 1):06d}"

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, split_code(self.split), int(index)]))

    def load(self, index: int) -> Sample:
        image, label, ins, records, info = render_scene(self.rng(index), self.height, self.width)
        meta = {"id": self.sample_id(index), "split": self.split, "index": int(index), "seed": self.seed,
                "instances": records, **info}
        return Sample(image, label.astype(np.int64), ins, meta)
