"""TeCo (Liu et al. 2023, "Detecting backdoors during the inference stage based on corruption
robustness consistency") adapted to segmentation (BADSEG §7, Appendix E, Table 16).

For each image and each of the 15 corruptions (``badseg.defenses.corruptions``), the prediction
on the corrupted image at severity 1..5 is compared with the prediction on the clean image by
mIoU (the clean prediction as reference, NaN-mean over classes present in either map); the
corruption's *break severity* is the first severity at which that mIoU falls below
``threshold``, or 6 if it never does. The score is the standard deviation of the break
severities over the corruptions: a trigger is robust to some corruptions and fragile to others,
a clean image is evenly robust (higher = more suspicious).

All 75 corrupted variants of an image are computed from the original image (not compounded,
see ``corruptions``) in worker processes, ahead of the model, and go through the model in
batches of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from badseg.defenses.base import DEFENSES, DefenseContext, detector_inputs, detector_result, to_tensor
from badseg.defenses.corruptions import CORRUPTIONS, SEVERITIES, variant_stream


def prediction_miou(reference: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """mIoU of each of ``preds`` (int64 K×H×W) against ``reference`` (int64 H×W) → float K; per-class
    IoU NaN-meaned over classes present in either map."""
    k = preds.shape[0]
    idx = (torch.arange(k).view(k, 1) * num_classes * num_classes
           + reference.view(1, -1) * num_classes + preds.view(k, -1))
    conf = torch.bincount(idx.view(-1), minlength=k * num_classes * num_classes).view(k, num_classes, num_classes)
    conf = conf.double()
    tp = conf.diagonal(dim1=1, dim2=2)
    union = conf.sum(1) + conf.sum(2) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
    return torch.nanmean(iou, dim=1).float()


def break_severities(miou: np.ndarray, threshold: float, severities: Sequence[int] = SEVERITIES) -> np.ndarray:
    """float (K, S) mIoU per corruption and severity → int K: first severity with mIoU < ``threshold``,
    ``max(severities) + 1`` where none."""
    broken = miou < threshold
    never = max(severities) + 1
    return np.where(broken.any(1), np.asarray(severities)[broken.argmax(1)], never)


@torch.inference_mode()
def teco_scores(model: torch.nn.Module, images: np.ndarray, num_classes: int, threshold: float = 0.5,
                corruptions: Sequence[str] = CORRUPTIONS, severities: Sequence[int] = SEVERITIES,
                batch_size: int = 76, seed: int = 0, workers: int | None = None,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """TeCo scores (higher = more suspicious) of uint8 (N, H, W, 3) ``images`` → (scores N,
    break severities N×K). Image ``i``'s corruptions draw from ``SeedSequence([seed, i])``."""
    device = next(model.parameters()).device
    seeds = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(len(images))]
    stream = variant_stream(images, corruptions, severities, seeds, workers)
    k, s = len(corruptions), len(severities)
    scores, breaks = [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("TeCo", total=len(images))
        for image, variants in zip(images, stream):
            x = to_tensor(np.concatenate([image[None], variants]))
            preds = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                               for i in range(0, x.shape[0], batch_size)])
            miou = prediction_miou(preds[0], preds[1:], num_classes).view(k, s).numpy()
            b = break_severities(miou, threshold, severities)
            breaks.append(b)
            scores.append(float(np.std(b)))
            bar.advance(task)
    return np.array(scores), np.stack(breaks)


@DEFENSES.register("teco")
def teco(ctx: DefenseContext, images: int = 250, threshold: float = 0.5, corruptions: list[str] = CORRUPTIONS,
         severities: list[int] = SEVERITIES, fpr: float = 0.05, batch_size: int = 76, workers: int | None = None,
         seed: int = 0) -> dict[str, Any]:
    """Score up to ``images`` clean and as many poisoned test images."""
    from badseg.report.defense_figures import save_score_kde

    bad = sorted(set(corruptions) - set(CORRUPTIONS))
    if bad:
        raise ValueError(f"unknown corruptions {bad}; valid: {', '.join(CORRUPTIONS)}")
    inputs = detector_inputs(ctx, images, seed)
    kw = dict(num_classes=ctx.train.spec.num_classes, threshold=threshold, corruptions=corruptions,
              severities=severities, batch_size=batch_size, workers=workers, progress=ctx.progress)
    clean, b_clean = teco_scores(ctx.model, inputs.clean, seed=seed, **kw)
    poisoned, b_poisoned = teco_scores(ctx.model, inputs.poisoned, seed=seed + 1, **kw)
    save_score_kde(clean, poisoned, ctx.figure_path("teco"), title=f"TeCo (mIoU break threshold {threshold})",
                   xlabel="score = std of break severities over corruptions")
    return detector_result(clean, poisoned, fpr, corruptions=list(corruptions), severities=list(severities),
                           threshold_miou=threshold,
                           mean_break_severity={"clean": b_clean.mean(0).tolist(),
                                                "poisoned": b_poisoned.mean(0).tolist()})
