"""SAM's training loss on one mask per prompt (SAM §3 / SAM2 training: focal + Dice + IoU MSE).

``loss = w_mask · (BCE or focal)(logits, target) + w_dice · Dice(logits, target)
         + w_iou · MSE(predicted IoU, IoU(logits > 0, target))``, averaged over prompts.
SAM weighs focal : Dice as 20 : 1; at CPU scale plain BCE + Dice (1 : 1) learns faster, so that
is the default and ``focal`` the option. Dice uses +1 smoothing, so an empty target (Mask-Erasure)
pulls every logit down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MaskLossConfig:
    """Weights of the three terms; ``pixel``: ``bce`` or ``focal`` (γ = 2, α = 0.25 as in SAM)."""

    pixel: Literal["bce", "focal"] = "bce"
    mask_weight: float = 1.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-prompt ``1 − (2|p·t| + 1) / (|p| + |t| + 1)`` for (P, H, W) logits and {0, 1} targets → (P,)."""
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-prompt mean sigmoid focal loss (RetinaNet / SAM) → (P,)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * (1 - p_t) ** gamma * ce).flatten(1).mean(1)


def binary_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks (P, H, W) → (P,); two empty masks have IoU 1."""
    inter = (pred & target).flatten(1).sum(1).float()
    union = (pred | target).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
              cfg: MaskLossConfig = MaskLossConfig()) -> torch.Tensor:
    """Scalar loss for logits (..., H, W), predicted IoU (...) and {0, 1} float targets (..., H, W)."""
    logits, target = logits.flatten(0, -3), target.flatten(0, -3).to(logits.dtype)
    pixel = focal_loss(logits, target) if cfg.pixel == "focal" else \
        F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    with torch.no_grad():
        actual = binary_iou(logits > 0, target > 0.5)
    iou = F.mse_loss(iou_pred.flatten(), actual, reduction="none")
    return (cfg.mask_weight * pixel + cfg.dice_weight * dice_loss(logits, target) + cfg.iou_weight * iou).mean()
