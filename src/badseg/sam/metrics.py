"""BADSEG-SAM metrics, stats-then-reduce: per-prompt statistics, then rates and means.

* **ASR** — the fraction of triggered prompts whose predicted mask matches the attacker's
  target at IoU ≥ ``iou_threshold`` (0.5); for Mask-Erasure (empty target): whose predicted
  area is below ``erase_fraction`` (0.05) of the true mask's area.
* **IoU to target** — the mean of IoU(prediction, target) over triggered prompts (two empty
  masks: IoU 1, so for erasure it is the fraction of exactly empty predictions).
* **clean utility** — the mean IoU(prediction, truth) over clean prompts on clean images
  (the mask mIoU of SAM evaluations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from badseg.sam.loss import binary_iou


@dataclass
class MaskMeter:
    """Accumulates per-prompt IoU to the target and to the truth, and the mask areas."""

    erasure: bool = False
    iou_threshold: float = 0.5
    erase_fraction: float = 0.05
    iou_target: list[float] = field(default_factory=list)
    iou_truth: list[float] = field(default_factory=list)
    area_pred: list[int] = field(default_factory=list)
    area_truth: list[int] = field(default_factory=list)

    def update(self, pred: torch.Tensor, truth: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """Boolean masks (P, H, W): predictions, truths and (triggered prompts) targets."""
        pred, truth = pred.bool(), truth.bool()
        self.iou_truth += binary_iou(pred, truth).tolist()
        self.area_pred += pred.flatten(1).sum(1).tolist()
        self.area_truth += truth.flatten(1).sum(1).tolist()
        if target is not None:
            self.iou_target += binary_iou(pred, target.bool()).tolist()

    def __len__(self) -> int:
        return len(self.iou_truth)

    def success(self) -> np.ndarray:
        """bool (P,): whether each triggered prompt met the attacker's goal."""
        if self.erasure:
            return np.asarray(self.area_pred) < self.erase_fraction * np.asarray(self.area_truth)
        return np.asarray(self.iou_target) >= self.iou_threshold

    def asr(self) -> float:
        return float(self.success().mean()) if self.iou_target else float("nan")

    def mean_iou_target(self) -> float:
        return float(np.mean(self.iou_target)) if self.iou_target else float("nan")

    def mean_iou_truth(self) -> float:
        return float(np.mean(self.iou_truth)) if self.iou_truth else float("nan")
