"""Trigger attributes, patterns and alpha-blended stamping (BADSEG §5.2, Table 20).

A trigger is a shape with a size, a pattern (colour) and an intensity, stamped
``quantity`` times. Blending: ``out = (1 - a*m) * image + a*m * pattern`` with the hard
shape mask ``m`` and intensity ``a``; only pixels inside ``m`` can change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from badseg.triggers.shapes import SHAPES, shape_mask

_COLOURS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "magenta": (255, 0, 255), "cyan": (0, 255, 255), "white": (255, 255, 255), "black": (0, 0, 0),
}
COLOURS: tuple[str, ...] = tuple(_COLOURS)
#: Base patterns: a 0/1 map per channel that the colour tints (``checker`` and ``stripes`` cells of
#: ``size_px // 4`` pixels, ``noise`` a fixed 8×8 colour grid, ``solid`` all on).
PATTERN_BASES: tuple[str, ...] = ("checker", "noise", "solid", "stripes")
#: ``<base>`` (white) or ``<base>:<colour>``; ``solid:<colour>`` is the solid patch of that colour.
PATTERNS: tuple[str, ...] = (*PATTERN_BASES, *(f"{b}:{c}" for b in PATTERN_BASES for c in _COLOURS))

#: Option grids of the BADSEG paper's Table 20 (the Stage-2 search space), per vector.
#: Object vectors size triggers relative to the object's width, B2B to the image width.
_OBJECT_GRID = {
    "shape": SHAPES,
    "size": (1 / 12, 1 / 10, 1 / 8, 1 / 6, 1 / 4, 1 / 2),
    "position": ("centre", "on_object", "outside_object"),
    "quantity": (1, 2, 3, 4, 5),
    "intensity": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
}
TRIGGER_GRIDS: dict[str, dict[str, tuple]] = {
    "o2o": _OBJECT_GRID,
    "o2b": _OBJECT_GRID,
    "b2o": {k: v for k, v in _OBJECT_GRID.items() if k != "position"},
    "b2b": {
        "shape": SHAPES,
        "size": (0.005, 0.010, 0.015, 0.020, 0.025),
        "quantity": (1, 3, 5, 7, 10),
        "intensity": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    },
}


@dataclass(frozen=True)
class TriggerSpec:
    """What a trigger looks like.

    Attributes:
        shape: one of ``SHAPES``.
        size: stamp width as a fraction of the reference width (object width for object
            vectors, image width for B2B).
        intensity: alpha-blend strength in [0, 1].
        quantity: number of stamps.
        pattern: ``<base>[:<colour>]`` (``PATTERNS``): ``checker`` (black/white, the default
            high-contrast pattern), ``stripes`` (vertical), ``noise`` (a fixed colour-noise
            pattern) or ``solid``; a colour (default white) tints the pattern's "on" cells, so
            ``solid:red`` is a red patch and ``checker:red`` red/black.
        min_size_px: lower bound on the stamp width in pixels.
        small_intensity, small_area_px: under the ``cover`` placement, a region (object) of
            fewer than ``small_area_px`` native pixels is blended at ``small_intensity`` instead
            of ``intensity`` — small, distant objects are where a faint texture is missed, and
            they cost little PSNR (``intensity_for``). None: one intensity for every region.
    """

    shape: str = "circle"
    size: float = 1 / 8
    intensity: float = 0.4
    quantity: int = 1
    pattern: str = "checker"
    min_size_px: int = 4
    small_intensity: float | None = None
    small_area_px: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown trigger shape {self.shape!r}; valid: {', '.join(SHAPES)}")
        if not 0.0 < self.size <= 1.0:
            raise ValueError(f"trigger size must be a fraction in (0, 1], got {self.size}")
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"trigger intensity must be in [0, 1], got {self.intensity}")
        if self.quantity < 1:
            raise ValueError(f"trigger quantity must be >= 1, got {self.quantity}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown trigger pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")
        if self.min_size_px < 1:
            raise ValueError(f"min_size_px must be >= 1, got {self.min_size_px}")
        if self.small_intensity is not None and not 0.0 <= self.small_intensity <= 1.0:
            raise ValueError(f"trigger small_intensity must be in [0, 1], got {self.small_intensity}")
        if self.small_area_px < 0:
            raise ValueError(f"trigger small_area_px must be >= 0, got {self.small_area_px}")
        if (self.small_intensity is None) != (self.small_area_px == 0):
            raise ValueError("trigger small_intensity and small_area_px go together: set both (or neither)")

    def intensity_for(self, area_px: int) -> float:
        """The blend intensity of a region of ``area_px`` native pixels (``small_intensity`` below
        ``small_area_px``, else ``intensity``)."""
        if self.small_intensity is not None and area_px < self.small_area_px:
            return self.small_intensity
        return self.intensity

    def size_px(self, reference_px: float) -> int:
        """Stamp width in pixels for a reference width (object or image width)."""
        return max(self.min_size_px, int(round(self.size * reference_px)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size_fraction"] = str(Fraction(self.size).limit_denominator(1000))
        return d


@dataclass(frozen=True)
class Stamp:
    """One placed stamp: top-left corner and width in pixels (the box is size x size)."""

    top: int
    left: int
    size: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.top + (self.size - 1) / 2, self.left + (self.size - 1) / 2)

    @classmethod
    def centred(cls, row: int, col: int, size: int) -> Stamp:
        return cls(row - size // 2, col - size // 2, size)

    def to_dict(self) -> dict:
        r, c = self.centre
        return {"centre": [r, c], "top_left": [self.top, self.left], "size_px": self.size}


def split_pattern(pattern: str) -> tuple[str, str]:
    """``"checker:red"`` → ``("checker", "red")``; a bare base is white."""
    base, _, colour = pattern.partition(":")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown trigger pattern {pattern!r}; valid: {', '.join(PATTERNS)}")
    return base, colour or "white"


def pattern_name(base: str, colour: str) -> str:
    """The ``PATTERNS`` name of a base tinted by a colour (white: the bare base)."""
    name = base if colour == "white" else f"{base}:{colour}"
    split_pattern(name)
    return name


def base_pattern(base: str, size_px: int) -> np.ndarray:
    """The 0/1 map of a base pattern, float32 (size_px, size_px, 3)."""
    if base in ("checker", "stripes"):
        idx = np.arange(size_px) // max(1, size_px // 4)
        board = ((idx[:, None] + idx[None, :]) % 2) if base == "checker" else np.broadcast_to(idx[None, :] % 2,
                                                                                          (size_px, size_px))
        return np.repeat(board.astype(np.float32)[:, :, None], 3, axis=2)
    if base == "noise":
        rng = np.random.default_rng(0x7A11)  # a fixed pattern: the same in every stamp
        cells = rng.integers(0, 2, size=(8, 8, 3)).astype(np.float32)
        idx = np.minimum(np.arange(size_px) * 8 // size_px, 7)
        return cells[idx][:, idx]
    if base == "solid":
        return np.ones((size_px, size_px, 3), np.float32)
    raise ValueError(f"unknown base pattern {base!r}; valid: {', '.join(PATTERN_BASES)}")


def colour_rgb(colour: str) -> np.ndarray:
    """RGB of a colour name (``COLOURS``), float32 (3,) in [0, 255]."""
    if colour not in _COLOURS:
        raise ValueError(f"unknown colour {colour!r}; valid: {', '.join(_COLOURS)}")
    return np.array(_COLOURS[colour], np.float32)


def pattern_image(pattern: str, size_px: int) -> np.ndarray:
    """Pattern colours of a ``size_px`` stamp, float32 (size_px, size_px, 3) in [0, 255]:
    the base pattern's 0/1 map times the colour."""
    base, colour = split_pattern(pattern)
    return base_pattern(base, size_px) * colour_rgb(colour)


def tiled_pattern(pattern: str, tile_px: int, shape: tuple[int, int]) -> np.ndarray:
    """``pattern``'s ``tile_px`` stamp repeated over an image of ``shape`` (H, W) from its top-left
    corner, float32 (H, W, 3) in [0, 255]: a texture whose phase is fixed in image coordinates."""
    h, w = shape
    tile = pattern_image(pattern, tile_px)
    return np.tile(tile, (-(-h // tile_px), -(-w // tile_px), 1))[:h, :w]


def cover(image: np.ndarray, trigger: TriggerSpec, mask: np.ndarray, tile_px: int,
          intensity: float | None = None) -> np.ndarray:
    """Blend ``trigger``'s pattern, tiled every ``tile_px`` pixels (``tiled_pattern``), over the
    pixels of ``mask`` (bool HxW) at ``intensity`` (default: the trigger's): a copy of ``image``
    (uint8 HxWx3). ``trigger.shape`` plays no part: the region itself is the trigger's shape."""
    alpha = trigger.intensity if intensity is None else intensity
    out = image.copy()
    texture = tiled_pattern(trigger.pattern, tile_px, image.shape[:2])[mask]
    blended = (1.0 - alpha) * out[mask].astype(np.float32) + alpha * texture
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def stamp(image: np.ndarray, trigger: TriggerSpec, where: Stamp) -> tuple[np.ndarray, np.ndarray]:
    """Blend one stamp into a copy of ``image`` (uint8 HxWx3).

    Returns (poisoned uint8 HxWx3, trigger mask bool HxW). The whole box must lie inside
    the image (placements guarantee it); anything else is a bug and raises.
    """
    return stamp_all(image, trigger, [where])


def stamp_all(image: np.ndarray, trigger: TriggerSpec, stamps: list[Stamp]) -> tuple[np.ndarray, np.ndarray]:
    """Blend every stamp in ``stamps`` into a copy of ``image``; see ``stamp``."""
    h, w = image.shape[:2]
    out = image.copy()
    mask = np.zeros((h, w), dtype=bool)
    for s in stamps:
        if s.top < 0 or s.left < 0 or s.top + s.size > h or s.left + s.size > w:
            raise ValueError(f"stamp {s} leaves the {h}x{w} image")
        m = shape_mask(trigger.shape, s.size)
        alpha = (m * trigger.intensity).astype(np.float32)[:, :, None]
        box = (slice(s.top, s.top + s.size), slice(s.left, s.left + s.size))
        region = out[box].astype(np.float32)
        blended = (1.0 - alpha) * region + alpha * pattern_image(trigger.pattern, s.size)
        out[box] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        mask[box] |= m
    return out, mask
