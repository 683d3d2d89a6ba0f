"""Evaluation of a (backdoored) model: CBA on the clean test set, ASR / PBA / false
activation on the poisoned test set, stealth of the poisoned test images (DESIGN §4).

Images and labels are resized to the model's input size (labels and masks nearest); the
stealth figures compare the clean and poisoned images at their native resolution.
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
            atk.update(predict(model, images, device), np.stack(labels), np.stack(asr), target, np.stack(decoy))
            bar.advance(task, len(idx))
    out = {"cba": seg.compute()["miou"], **atk.compute(), "per_class_iou": seg.compute()["per_class_iou"]}
    if stealth is not None:
        out.update(stealth.compute())
    return out
