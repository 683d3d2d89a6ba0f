"""Triggers: shapes from signed-distance functions, patterns, and stamping into images.

Example:
    >>> from badseg.triggers import TriggerSpec, stamp
    >>> spec = TriggerSpec(shape="circle", size=1 / 8, intensity=0.4)
    >>> out, mask = stamp(image, spec, centre=(60, 120), size_px=12)
"""

from badseg.triggers.render import TRIGGER_GRIDS, Stamp, TriggerSpec, pattern_image, stamp, stamp_all
from badseg.triggers.shapes import SHAPES, shape_mask, signed_distance, soft_shape_mask

__all__ = [
    "SHAPES",
    "TRIGGER_GRIDS",
    "Stamp",
    "TriggerSpec",
    "pattern_image",
    "shape_mask",
    "signed_distance",
    "soft_shape_mask",
    "stamp",
    "stamp_all",
]
