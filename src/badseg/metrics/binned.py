"""A rate (hits over pixels) pooled per bin of one value: ASR by stamp width
(``stamp_width.StampWidthBreakdown``), flip rate by victim-instance area (``flips.FlipBreakdown``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class BinnedRate:
    """Hits and pixel totals pooled per ``[lo, hi)`` bin of ``edges``; ``keys`` name a row's
    bin, item count, pixel total and rate (e.g. ``("stamp_px", "images", "asr_pixels", "asr")``)."""

    def __init__(self, edges: Sequence[float], keys: tuple[str, str, str, str]) -> None:
        self.edges, self.keys = tuple(edges), keys
        self.hits = np.zeros(len(edges) - 1, dtype=np.int64)
        self.total = np.zeros(len(edges) - 1, dtype=np.int64)
        self.items = np.zeros(len(edges) - 1, dtype=np.int64)

    def update(self, value: float, hits: int, total: int) -> None:
        """One item (an image, an instance) whose ``value`` falls in a bin: ``hits`` of ``total`` pixels."""
        b = int(np.searchsorted(self.edges, value, side="right")) - 1
        self.hits[b] += hits
        self.total[b] += total
        self.items[b] += 1

    def compute(self) -> list[dict[str, Any]]:
        """One row per non-empty bin: ``[lo, hi)`` (hi None when unbounded), items, pixels, rate."""
        bin_key, item_key, pixel_key, rate_key = self.keys
        return [{bin_key: [lo, None if hi == float("inf") else hi], item_key: int(n), pixel_key: int(t),
                 rate_key: float(h / t) if t else None}
                for lo, hi, n, h, t in zip(self.edges[:-1], self.edges[1:], self.items, self.hits, self.total)
                if n]
