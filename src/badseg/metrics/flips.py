"""Where an object backdoor fires: the share of victim pixels predicted as the target on the
victim instance that carries the trigger, on the other victim instances of the same triggered
image, and on the clean originals of those images (``badseg eval --breakdown``).

O2B / O2O relabel every victim instance of a poisoned image, INS only the triggered ones, so
"carrier" against "other" says whether a model learned the local rule ("this object carries a
trigger") or the image-level one ("a trigger anywhere"); "clean" is the flip rate without any
trigger (docs/results.md, "Why the demo's ASR used to stop near 0.7"). Instances are the
connected components (``scipy.ndimage.label``, 4-connectivity) of the victim class in the
ground truth at the model's input; a carrier is one that overlaps the trigger mask.
``by_area`` pools the triggered images' victim pixels by the area of their instance at the
model's input instead: whether small, distant objects are the ones that resist.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from badseg.metrics.binned import BinnedRate

#: The three pools of victim pixels.
FLIP_POOLS = ("carrier", "other", "clean")

#: Bin edges (pixels at the model's input) of an instance's area in ``FlipBreakdown.by_area``.
AREA_BINS: tuple[float, ...] = (0, 64, 256, 1024, 4096, float("inf"))


class FlipBreakdown:
    """Victim pixels predicted as ``target``, pooled as carrier / other / clean (module docstring).

    Example:
        >>> fb = FlipBreakdown(victim=1, target=2)
        >>> fb.update_triggered(pred, label, trigger_mask)  # the triggered image's prediction
        >>> fb.update_clean(clean_pred, label)  # its clean original's
        >>> fb.compute()["carrier"]["flipped"]
    """

    def __init__(self, victim: int, target: int) -> None:
        self.victim, self.target = victim, target
        self.flipped = dict.fromkeys(FLIP_POOLS, 0)
        self.pixels = dict.fromkeys(FLIP_POOLS, 0)
        self.classes: dict[str, np.ndarray] = {p: np.zeros(0, np.int64) for p in FLIP_POOLS}
        self.area = BinnedRate(AREA_BINS, ("area_px", "instances", "pixels", "flipped"))

    def _add(self, pool: str, pred: np.ndarray, mask: np.ndarray) -> None:
        self.flipped[pool] += int((pred[mask] == self.target).sum())
        self.pixels[pool] += int(mask.sum())
        counts = np.bincount(pred[mask].ravel().astype(np.int64), minlength=self.classes[pool].size)
        counts[: self.classes[pool].size] += self.classes[pool]
        self.classes[pool] = counts

    def update_triggered(self, pred: np.ndarray, label: np.ndarray, trigger_mask: np.ndarray) -> None:
        """One triggered image: int (H, W) prediction, its clean int (H, W) ground truth and the
        bool (H, W) trigger mask, all at the model's input size."""
        comps, n = ndimage.label(label == self.victim)
        carriers = np.unique(comps[trigger_mask & (comps > 0)])
        carrier = np.isin(comps, carriers) & (comps > 0)
        self._add("carrier", pred, carrier)
        self._add("other", pred, (comps > 0) & ~carrier)
        area = np.bincount(comps.ravel(), minlength=n + 1)[1:]
        hits = np.bincount(comps[pred == self.target], minlength=n + 1)[1:]
        for a, h in zip(area.tolist(), hits.tolist()):
            self.area.update(a, h, a)

    def update_clean(self, pred: np.ndarray, label: np.ndarray) -> None:
        """The clean original of a triggered image: int (H, W) prediction and ground truth."""
        self._add("clean", pred, label == self.victim)

    def compute(self) -> dict[str, dict[str, Any]]:
        """``{pool: {"flipped": share of its victim pixels predicted as the target (None when it
        has none), "pixels": its victim pixels, "predicted_as": {class id: share of them predicted
        as it}, largest first}}`` for carrier, other and clean — what the unflipped pixels became."""
        out = {}
        for p in FLIP_POOLS:
            n = self.pixels[p]
            order = np.argsort(-self.classes[p], kind="stable")
            out[p] = {"flipped": self.flipped[p] / n if n else None, "pixels": n,
                      "predicted_as": {int(c): self.classes[p][c] / n for c in order if self.classes[p][c]}}
        return out

    def by_area(self) -> list[dict[str, Any]]:
        """One row per non-empty ``AREA_BINS`` bin of the triggered images' victim instances:
        ``area_px`` ``[lo, hi)`` at the model's input, ``instances``, ``pixels``, ``flipped`` (the
        share of those pixels predicted as the target)."""
        return self.area.compute()
