"""Evaluation of a (backdoored) model: CBA on the clean test set, ASR / PBA / false
activation on the poisoned test set, stealth of the poisoned test images (DESIGN §4).

Images and labels are resized to the evaluation size (labels and masks nearest,
``badseg.data.resize``; ``None``: kept at the files' resolution) and the model runs on the
whole image or, with a ``SlideWindow``, window by window (``build.eval_transform``); ASR and
poisoned-pixel masks are resized exactly as the labels, so they stay on the pixels they mark.
The stealth figures compare the clean and poisoned images at their native resolution. ASR is
also broken down by the trigger stamp's width at the model's input (``badseg.metrics.stamp_width``)
and, on request, the victim pixels flipped by where they are (``badseg.metrics.flips``).
``evaluate`` returns an ``EvalResult``: the metrics and the
predictions on the samples a report shows, so the report renders them without predicting again.
``poisoned_set_stealth`` and ``config_stealth`` measure the stealth alone, without a model
(``badseg stealth``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from badseg.attacks import Poisoned
from badseg.config import RunConfig
from badseg.data.base import SegDataset
from badseg.data.resize import resize_mask, resize_pair
from badseg.data.types import Sample
from badseg.metrics.flips import FlipBreakdown
from badseg.metrics.segmentation import AttackMeter, SegmentationMeter
from badseg.metrics.stamp_width import StampWidthBreakdown, stamp_px_at_input
from badseg.metrics.stealth import StealthMeter
from badseg.poisoning.dataset import PoisonedTestSet
from badseg.train.infer import SlideWindow


@torch.inference_mode()
def predict(model: torch.nn.Module, images: Sequence[np.ndarray], device: torch.device,
            slide: SlideWindow | None = None) -> list[np.ndarray]:
    """uint8 (H, W, 3) images → int64 (H, W) predicted classes, whole or window by window
    (``slide``); images of one size go through the model together."""
    out: list[np.ndarray | None] = [None] * len(images)
    shapes: dict[tuple[int, ...], list[int]] = {}
    for j, image in enumerate(images):
        shapes.setdefault(image.shape, []).append(j)
    for group in shapes.values():
        x = torch.from_numpy(np.stack([images[j] for j in group])).to(device).permute(0, 3, 1, 2).float().div_(255)
        logits = model(x) if slide is None else slide.logits(model, x)
        for j, pred in zip(group, logits.argmax(1).cpu().numpy()):
            out[j] = pred
    return out


def at_size(image: np.ndarray, label: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """``resize_pair`` to ``size``; ``None`` keeps the pair as it is."""
    return (image, label.astype(np.int64, copy=False)) if size is None else resize_pair(image, label, size)


def mask_at(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A bool (H, W) mask resized as labels are (nearest neighbour) to ``size``; ``None`` keeps it."""
    return mask.astype(bool, copy=False) if size is None else resize_mask(mask, size)


@dataclass
class FigureSample:
    """A poisoned test sample a report shows. ``image``, ``label``, ``triggered`` and both
    predictions are at the evaluation size (H, W); ``clean`` and ``poisoned`` at native size."""

    clean: Sample
    poisoned: Poisoned
    image: np.ndarray  # uint8 (H, W, 3), the clean image
    label: np.ndarray  # int64 (H, W), ground truth
    triggered: np.ndarray  # uint8 (H, W, 3), the poisoned image
    pred_clean: np.ndarray  # int64 (H, W)
    pred_triggered: np.ndarray  # int64 (H, W)


@dataclass
class EvalResult:
    """What ``evaluate`` measured.

    Attributes:
        cba: mIoU on the clean test set; ``per_class_iou`` its classes (None: empty union).
        asr, pba, false_activation: on the poisoned test set (None where nothing was counted);
            ``n_asr_pixels``, ``n_decoy_pixels`` the pixels they were counted over.
        asr_by_stamp_px: rows of ``StampWidthBreakdown.compute``.
        stealth: ``StealthMeter.compute`` (psnr, ssim, lpips, lpips_reason, n_images), or {}.
        flip_breakdown: ``FlipBreakdown.compute`` (carrier / other / clean), or None when not asked;
            ``flip_by_area`` its ``by_area`` rows (the flip rate by victim-instance area).
        samples: the figure samples with their predictions.
    """

    cba: float | None
    per_class_iou: list[float | None]
    asr: float | None
    pba: float | None
    false_activation: float | None
    n_asr_pixels: int
    n_decoy_pixels: int
    asr_by_stamp_px: list[dict[str, Any]]
    stealth: dict[str, Any] = field(default_factory=dict)
    flip_breakdown: dict[str, dict[str, Any]] | None = None
    flip_by_area: list[dict[str, Any]] | None = None
    samples: list[FigureSample] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, Any]:
        """The JSON-able figures, as metrics.json holds them (``flip_breakdown`` only when measured)."""
        out = {"cba": self.cba, "asr": self.asr, "pba": self.pba, "false_activation": self.false_activation,
               "n_asr_pixels": self.n_asr_pixels, "n_decoy_pixels": self.n_decoy_pixels,
               "per_class_iou": self.per_class_iou, "asr_by_stamp_px": self.asr_by_stamp_px, **self.stealth}
        if self.flip_breakdown is not None:
            out["flip_breakdown"] = self.flip_breakdown
        if self.flip_by_area is not None:
            out["flip_by_area"] = self.flip_by_area
        return out


def figure_indices(n_poisoned: int, n: int) -> list[int]:
    """``n`` positions spread evenly over a poisoned test set of ``n_poisoned`` images."""
    n = min(n, n_poisoned)
    return sorted({int(k) for k in np.linspace(0, n_poisoned - 1, n).round()}) if n else []


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def evaluate(model: torch.nn.Module, clean_test: SegDataset, poisoned_test: PoisonedTestSet,
             size: tuple[int, int] | None, target: int, batch_size: int = 8, device: str | torch.device = "cpu",
             stealth: StealthMeter | None = None, progress: bool = True, figure_samples: int = 0,
             slide: SlideWindow | None = None, flips: bool = False) -> EvalResult:
    """Metrics of ``model`` (eval mode) on the clean and poisoned test sets at ``size`` (None:
    the files' resolution), whole or with the sliding window ``slide``, plus its predictions on
    ``figure_samples`` poisoned test samples spread over the set (``figure_indices``; the clean
    prediction is the clean pass's, not a second one). With ``flips``, the victim pixels flipped
    on the trigger's carrier, on the other victim instances and on the clean originals
    (``FlipBreakdown``; the originals' predictions are the clean pass's)."""
    device = torch.device(device)
    model.eval().to(device)
    spec = clean_test.spec
    seg, atk = SegmentationMeter(spec.num_classes, spec.ignore_index), AttackMeter(spec.num_classes, spec.ignore_index)
    by_width = StampWidthBreakdown()
    shown = {poisoned_test.indices[k]: k for k in figure_indices(len(poisoned_test), figure_samples)}
    breakdown = FlipBreakdown(poisoned_test.attack.victim, target) if flips else None
    originals = set(poisoned_test.indices)  # the clean test images behind the poisoned ones
    clean_preds: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    samples: list[FigureSample] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating clean test set", total=len(clean_test))
        for idx in _batches(len(clean_test), batch_size):
            pairs = [at_size(clean_test[i].image, clean_test[i].label, size) for i in idx]
            pred = predict(model, [p[0] for p in pairs], device, slide)
            for (_, label), pr in zip(pairs, pred):
                seg.update(pr[None], label[None])
            clean_preds.update({i: (*pairs[j], pred[j]) for j, i in enumerate(idx) if i in shown})
            if breakdown is not None:
                for j, i in enumerate(idx):
                    if i in originals:
                        breakdown.update_clean(pred[j], pairs[j][1])
            bar.advance(task, len(idx))
        task = bar.add_task("evaluating poisoned test set", total=len(poisoned_test))
        for idx in _batches(len(poisoned_test), batch_size):
            items = [poisoned_test[k] for k in idx]
            images, labels, asr, decoy = [], [], [], []
            for clean, p in items:
                image, label = at_size(p.image, clean.label, size)
                images.append(image)
                labels.append(label)
                asr.append(mask_at(p.asr_mask, size))
                decoy.append(mask_at(p.decoy_mask, size) if p.decoy_mask is not None else np.zeros(label.shape, bool))
                if stealth is not None:
                    stealth.update(clean.image, p.image)
            pred = predict(model, images, device, slide)
            counts = [atk.update(pr[None], lab[None], a[None], target, d[None])
                      for pr, lab, a, d in zip(pred, labels, asr, decoy)]
            for j, ((clean, p), (h, t)) in enumerate(zip(items, counts)):
                width = stamp_px_at_input(p.record, p.image.shape[1], images[j].shape[1])
                by_width.update(width, int(h[0]), int(t[0]))
                if breakdown is not None:
                    breakdown.update_triggered(pred[j], labels[j], mask_at(p.trigger_mask, size))
                i = poisoned_test.indices[idx[j]]
                if i in clean_preds:
                    img, gt, pred_clean = clean_preds[i]
                    samples.append(FigureSample(clean, p, img, gt, images[j], pred_clean, pred[j]))
            bar.advance(task, len(idx))
    seg_m, atk_m = seg.compute(), atk.compute()
    return EvalResult(cba=seg_m["miou"], per_class_iou=seg_m["per_class_iou"], asr=atk_m["asr"], pba=atk_m["pba"],
                      false_activation=atk_m["false_activation"], n_asr_pixels=atk_m["n_asr_pixels"],
                      n_decoy_pixels=atk_m["n_decoy_pixels"], asr_by_stamp_px=by_width.compute(),
                      stealth=stealth.compute() if stealth is not None else {},
                      flip_breakdown=breakdown.compute() if breakdown is not None else None,
                      flip_by_area=breakdown.by_area() if breakdown is not None else None, samples=samples)


def poisoned_set_stealth(poisoned_test: PoisonedTestSet, stealth: StealthMeter, progress: bool = False,
                         description: str = "stealth") -> dict[str, Any]:
    """PSNR / SSIM / LPIPS of every image of ``poisoned_test`` against its clean original, at native
    resolution (the figures ``evaluate`` reports beside the ASR, without a model) → ``stealth.compute()``."""
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(description, total=len(poisoned_test))
        for k in range(len(poisoned_test)):
            clean, p = poisoned_test[k]
            stealth.update(clean.image, p.image)
            bar.advance(task)
    return stealth.compute()


def config_stealth(cfg: RunConfig, lpips_weights: str | None = None, progress: bool = False) -> dict[str, Any]:
    """The stealth of ``cfg``'s poisoned test set, built exactly as ``badseg run`` builds it (every
    applicable test image, triggered at native resolution; no training): ``poisoned_set_stealth``
    plus what was measured — ``attack`` (``Attack.describe``), ``n_skipped`` and ``skipped``
    (the inapplicable test images, by reason). LPIPS uses ``lpips_weights`` (else
    ``cfg.lpips_weights``); without AlexNet weights it is None and ``lpips_reason`` says why."""
    from badseg.build import attack_for, datasets_for

    train, test = datasets_for(cfg)
    attack = attack_for(cfg, train)
    poisoned = PoisonedTestSet(test, attack, cfg.seed, workers=cfg.workers or 1)
    meter = StealthMeter.from_weights(lpips_weights or cfg.lpips_weights)
    figures = poisoned_set_stealth(poisoned, meter, progress, f"stealth of {attack.name}")
    return {"attack": attack.describe(), "n_skipped": sum(poisoned.skipped.values()), "skipped": poisoned.skipped,
            **figures}
