"""ASR broken down by how wide the trigger stamp is at the model's input.

A stamp blended at native resolution and then shrunk to the input size can end up a few
pixels wide, and such stamps are hardly learned (docs/results.md, "Why the CamVid ASR stops
near 0.7"), so this breakdown (``asr_by_stamp_px`` in metrics.json) is the first thing to look
at when ASR is low.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from badseg.metrics.binned import BinnedRate


#: Bin edges (pixels at the model's input) of ``asr_by_stamp_px``.
STAMP_PX_BINS: tuple[float, ...] = (0, 4, 8, 12, 16, float("inf"))


def stamp_px_at_input(record: dict[str, Any], native_width: int, input_width: int) -> float | None:
    """Width at the model's input of the widest trigger stamp of a poisoned sample's record
    (None for triggers that are not square stamps, e.g. HBA's line)."""
    widths = [s["size_px"] for s in record.get("stamps", []) if "size_px" in s]
    return max(widths) * input_width / native_width if widths else None


class StampWidthBreakdown(BinnedRate):
    """ASR pooled separately per bin of the trigger stamp's width at the model's input; rows:
    ``stamp_px`` ``[lo, hi)``, ``images``, ``asr_pixels``, ``asr``."""

    def __init__(self, edges: Sequence[float] = STAMP_PX_BINS) -> None:
        super().__init__(edges, ("stamp_px", "images", "asr_pixels", "asr"))

    def update(self, width_px: float | None, hits: int, total: int) -> None:
        if width_px is not None:
            super().update(width_px, hits, total)
