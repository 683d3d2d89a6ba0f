"""Evaluation of a (backdoored) model: CBA on the clean test set, ASR / PBA / false
activation on the poisoned test set, stealth of the poisoned test images (DESIGN §4).

Images and labels are resized to the model's input size (labels and masks nearest); the
stealth figures compare the clean and poisoned images at their native resolution.

ASR is also broken down by how wide the trigger stamp is at the model's input
(``asr_by_stamp_px``): a stamp blended at native resolution and then shrunk to the input
size can end up a few pixels wide, and such stamps are hardly learned (docs/results.md,
"Why the CamVid ASR stops near 0.7"), so this is the first thing to look at when ASR is low.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from badseg.data.base import SegDataset
from badseg.metrics.segmentation import AttackMeter, SegmentationMeter
from badseg.metrics.stealth import StealthMeter
from badseg.poisoning.dataset import PoisonedTestSet
from badseg.train.augment import resize_label, resize_pair


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return resize_label(mask, size).astype(bool)


@torch.inference_mode()
def predict(model: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device) -> np.ndarray:
    """uint8 (N, H, W, 3) images → int64 (N, H, W) predicted classes."""
    x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
    return model(x).argmax(1).cpu().numpy()


#: Bin edges (pixels at the model's input) of ``asr_by_stamp_px``.
STAMP_PX_BINS: tuple[float, ...] = (0, 4, 8, 12, 16, float("inf"))


def stamp_px_at_input(record: dict[str, Any], native_width: int, input_width: int) -> float | None:
    """Width at the model's input of the widest trigger stamp of a poisoned sample's record
    (None for triggers that are not square stamps, e.g. HBA's line)."""
    widths = [s["size_px"] for s in record.get("stamps", []) if "size_px" in s]
    return max(widths) * input_width / native_width if widths else None


class StampWidthBreakdown:
    """ASR pooled separately per bin of the trigger stamp's width at the model's input."""

    def __init__(self, edges: Sequence[float] = STAMP_PX_BINS) -> None:
        self.edges = tuple(edges)
        self.hits = np.zeros(len(edges) - 1, dtype=np.int64)
        self.total = np.zeros(len(edges) - 1, dtype=np.int64)
        self.images = np.zeros(len(edges) - 1, dtype=np.int64)

    def update(self, width_px: float | None, hits: int, total: int) -> None:
        if width_px is None:
            return
        b = int(np.searchsorted(self.edges, width_px, side="right")) - 1
        self.hits[b] += hits
        self.total[b] += total
        self.images[b] += 1

    def compute(self) -> list[dict[str, Any]]:
        """One row per non-empty bin: ``stamp_px`` ``[lo, hi)``, ``images``, ``asr_pixels``, ``asr``."""
        return [{"stamp_px": [lo, None if hi == float("inf") else hi], "images": int(n), "asr_pixels": int(t),
                 "asr": float(h / t) if t else None}
                for lo, hi, n, h, t in zip(self.edges[:-1], self.edges[1:], self.images, self.hits, self.total)
                if n]


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def evaluate(model: torch.nn.Module, clean_test: SegDataset, poisoned_test: PoisonedTestSet,
             size: tuple[int, int], target: int, batch_size: int = 8, device: str | torch.device = "cpu",
             stealth: StealthMeter | None = None, progress: bool = True) -> dict[str, Any]:
    """Metrics of ``model`` (eval mode) on the clean and poisoned test sets."""
    device = torch.device(device)
    model.eval().to(device)
    spec = clean_test.spec
    seg, atk = SegmentationMeter(spec.num_classes, spec.ignore_index), AttackMeter(spec.num_classes, spec.ignore_index)
    by_width = StampWidthBreakdown()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating clean test set", total=len(clean_test))
        for idx in _batches(len(clean_test), batch_size):
            pairs = [resize_pair(clean_test[i].image, clean_test[i].label, size) for i in idx]
            seg.update(predict(model, [p[0] for p in pairs], device), np.stack([p[1] for p in pairs]))
            bar.advance(task, len(idx))
        task = bar.add_task("evaluating poisoned test set", total=len(poisoned_test))
        for idx in _batches(len(poisoned_test), batch_size):
            items = [poisoned_test[k] for k in idx]
            images, labels, asr, decoy = [], [], [], []
            for clean, p in items:
                image, label = resize_pair(p.image, clean.label, size)
                images.append(image)
                labels.append(label)
                asr.append(_resize_mask(p.asr_mask, size))
                decoy.append(_resize_mask(p.decoy_mask, size) if p.decoy_mask is not None else np.zeros(size, bool))
                if stealth is not None:
                    stealth.update(clean.image, p.image)
            hits, totals = atk.update(predict(model, images, device), np.stack(labels), np.stack(asr), target,
                                      np.stack(decoy))
            for (_, p), h, t in zip(items, hits, totals):
                by_width.update(stamp_px_at_input(p.record, p.image.shape[1], size[1]), int(h), int(t))
            bar.advance(task, len(idx))
    out = {"cba": seg.compute()["miou"], **atk.compute(), "per_class_iou": seg.compute()["per_class_iou"],
           "asr_by_stamp_px": by_width.compute()}
    if stealth is not None:
        out.update(stealth.compute())
    return out
