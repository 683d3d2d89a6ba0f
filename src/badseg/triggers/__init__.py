"""Triggers: shapes from signed-distance functions, patterns, and stamping into images.

Example:
    >>> from badseg.triggers import TriggerSpec, stamp
    >>> spec = TriggerSpec(shape="circle", size=1 / 8, intensity=0.4)
    >>> out, mask = stamp(image, spec, centre=(60, 120), size_px=12)
"""

from badseg.triggers.render import (
    COLOURS,
    PATTERN_BASES,
    PATTERNS,
    TRIGGER_GRIDS,
    Stamp,
    TriggerSpec,
    base_pattern,
    colour_rgb,
    cover,
    pattern_image,
    pattern_name,
    split_pattern,
    stamp,
    stamp_all,
    tiled_pattern,
)
from badseg.triggers.shapes import SHAPES, shape_mask, signed_distance, soft_shape_mask

__all__ = [
    "COLOURS",
    "PATTERNS",
    "PATTERN_BASES",
    "SHAPES",
    "TRIGGER_GRIDS",
    "Stamp",
    "TriggerSpec",
    "base_pattern",
    "colour_rgb",
    "cover",
    "pattern_image",
    "pattern_name",
    "shape_mask",
    "signed_distance",
    "soft_shape_mask",
    "split_pattern",
    "stamp",
    "stamp_all",
    "tiled_pattern",
]
