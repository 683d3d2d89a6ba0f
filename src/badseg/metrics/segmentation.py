"""Segmentation and backdoor metrics, stats-then-reduce: confusion matrix → IoU; ASR; PBA; CBA.

Definitions follow BADSEG appendix C and DESIGN §4: ASR is pooled over the pixels of all
poisoned test images; CBA is the mIoU on the clean test set; PBA is the mIoU on the poisoned
test set against the original labels with the ASR region removed from prediction and ground
truth. Classes with an empty union are excluded (NaN-mean); ignore pixels never count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from badseg.data.types import IGNORE_INDEX

ArrayLike = np.ndarray | torch.Tensor


def _check_integer(x: ArrayLike, name: str) -> None:
    floating = x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
    if floating:
        raise TypeError(f"{name} must hold integer class ids (argmax of the logits), got {x.dtype}")


def _check_range(values: ArrayLike, num_classes: int, name: str) -> None:
    if values.numel() if isinstance(values, torch.Tensor) else values.size:
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} has class ids in [{lo}, {hi}], outside 0..{num_classes - 1}")


def _to_torch(x: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.as_tensor(np.asarray(x), device=device)


def confusion_matrix(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    valid: ArrayLike | None = None,
) -> np.ndarray:
    """Confusion matrix ``(C, C)`` int64, rows = ground truth, columns = prediction.

    ``pred`` and ``target`` are integer maps of the same shape (``H,W`` or ``N,H,W``), numpy
    arrays or torch tensors (counted on the tensors' device with ``torch.bincount``). Pixels
    where ``target == ignore_index`` never count; ``valid`` (bool, same shape) restricts the
    count further. Any other target or prediction outside ``0..C-1`` on a counted pixel raises.
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if valid is not None and tuple(valid.shape) != tuple(target.shape):
        raise ValueError(f"valid shape {tuple(valid.shape)} != target shape {tuple(target.shape)}")
    _check_integer(pred, "pred")
    _check_integer(target, "target")
    c = num_classes
    tensors = [x for x in (pred, target, valid) if isinstance(x, torch.Tensor)]
    if tensors:
        device = tensors[0].device
        p, t = _to_torch(pred, device), _to_torch(target, device)
        mask = t != ignore_index
        if valid is not None:
            mask &= _to_torch(valid, device).bool()
        tv, pv = t[mask].long(), p[mask].long()
        _check_range(tv, c, "target")
        _check_range(pv, c, "pred")
        counts = torch.bincount(tv * c + pv, minlength=c * c)
        return counts.reshape(c, c).cpu().numpy().astype(np.int64)
    p, t = np.asarray(pred), np.asarray(target)
    mask = t != ignore_index
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    tv, pv = t[mask].astype(np.int64), p[mask].astype(np.int64)
    _check_range(tv, c, "target")
    _check_range(pv, c, "pred")
    return np.bincount(tv * c + pv, minlength=c * c).reshape(c, c).astype(np.int64)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN where the class's union is empty."""
    conf = np.asarray(conf, dtype=np.float64)
    inter = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - inter
    iou = np.full(conf.shape[0], np.nan)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes with a non-empty union; NaN when there is none."""
    iou = per_class_iou(conf)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else math.nan


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _count(x: ArrayLike) -> int:
    return int(x.sum())


def _per_image(x: ArrayLike) -> np.ndarray:
    """True pixels per image of a bool (H, W) or (N, H, W) map → int64 (N,) ((1,) for one image)."""
    n = x.reshape(-1, x.shape[-2] * x.shape[-1]).sum(-1)
    return (n.cpu().numpy() if isinstance(n, torch.Tensor) else n).astype(np.int64)


class SegmentationMeter:
    """Accumulates a dataset-wide confusion matrix; on the clean test set its mIoU is the CBA."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.conf = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.conf[:] = 0

    def update(self, pred: ArrayLike, target: ArrayLike, valid: ArrayLike | None = None) -> None:
        self.conf += confusion_matrix(pred, target, self.num_classes, self.ignore_index, valid)

    def compute(self) -> dict[str, Any]:
        """``{"miou": float | None, "per_class_iou": [float | None, ...]}`` (None = empty union)."""
        return {
            "miou": _none_if_nan(miou(self.conf)),
            "per_class_iou": [_none_if_nan(float(v)) for v in per_class_iou(self.conf)],
        }


class AttackMeter:
    """Accumulates ASR, PBA and false activation over predictions on poisoned test images.

    Per ``update`` (one image ``H,W`` or a batch ``N,H,W``; numpy or torch):

    - ASR hits/total: pixels of ``asr_mask`` predicted as ``target_class`` / pixels of
      ``asr_mask``, pooled over all updates;
    - PBA confusion: prediction vs ``original_label`` with the ASR region removed;
    - false activation: pixels of ``decoy_mask`` (triggered objects that must keep their
      label, CON attack) predicted as ``target_class`` / pixels of ``decoy_mask``.

    Pixels whose original label is ``ignore_index`` never count in any of the three.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.asr_hits = 0
        self.asr_total = 0
        self.decoy_hits = 0
        self.decoy_total = 0

    def update(
        self,
        pred: ArrayLike,
        original_label: ArrayLike,
        asr_mask: ArrayLike,
        target_class: int,
        decoy_mask: ArrayLike | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        masks = [asr_mask] if decoy_mask is None else [asr_mask, decoy_mask]
        for m in masks:
            if tuple(m.shape) != tuple(original_label.shape):
                raise ValueError(f"mask shape {tuple(m.shape)} != label shape {tuple(original_label.shape)}")
        tensors = [x for x in (pred, original_label, *masks) if isinstance(x, torch.Tensor)]
        if tensors:
            device = tensors[0].device
            pred, original_label = _to_torch(pred, device), _to_torch(original_label, device)
            asr = _to_torch(asr_mask, device).bool()
            decoy = None if decoy_mask is None else _to_torch(decoy_mask, device).bool()
        else:
            pred, original_label = np.asarray(pred), np.asarray(original_label)
            asr = np.asarray(asr_mask, dtype=bool)
            decoy = None if decoy_mask is None else np.asarray(decoy_mask, dtype=bool)
        labelled = original_label != self.ignore_index
        hit = pred == target_class
        region = asr & labelled
        image_hits, image_total = _per_image(region & hit), _per_image(region)
        self.asr_hits += int(image_hits.sum())
        self.asr_total += int(image_total.sum())
        self.conf += confusion_matrix(pred, original_label, self.num_classes, self.ignore_index, valid=~asr)
        if decoy is not None:
            region = decoy & labelled
            self.decoy_hits += _count(region & hit)
            self.decoy_total += _count(region)
        return image_hits, image_total

    def compute(self) -> dict[str, Any]:
        """``asr`` (None when no ASR pixel was seen), ``pba`` (None when nothing was counted),
        ``false_activation`` (None without decoy pixels), ``n_asr_pixels``, ``n_decoy_pixels``."""
        return {
            "asr": self.asr_hits / self.asr_total if self.asr_total else None,
            "pba": _none_if_nan(miou(self.conf)),
            "false_activation": self.decoy_hits / self.decoy_total if self.decoy_total else None,
            "n_asr_pixels": self.asr_total,
            "n_decoy_pixels": self.decoy_total,
        }
