"""Fine-pruning (Liu et al. 2018, as IBA and BADSEG §7 use it, Table 14): rank the channels of
the last feature layer by their mean activation on clean data and zero the least active ones.

The last feature layer is ``SegModel.features`` (the decoder output the classifier reads).
Zeroing feature channel ``c`` is the same as zeroing column ``c`` of the classifier's weight, so
the mask is applied there with ``torch.nn.utils.prune`` (a forward mask that also holds during
optional fine-tuning) and then made permanent: the pruned model's ``state_dict`` is an ordinary
one, with those columns zero, and loads into a fresh model of the same name.

Mean activations are running sums over the clean images (``channel_activation_means``); no
activation map is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from rich.progress import Progress
from torch.nn.utils import prune

from badseg.defenses.base import DEFENSES, DefenseContext, clean_fraction, resized_images, to_tensor, train_like_run
from badseg.models.segmodel import SegModel


@torch.inference_mode()
def channel_activation_means(model: SegModel, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Mean of each channel of ``model.features`` over all pixels of all images → float D.

    ``batches`` yields float N×3×H×W images in [0, 1]."""
    total, count = None, 0
    device = next(model.parameters()).device
    for x in batches:
        f = model.features(x.to(device)).double()
        s = f.sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        count += f.shape[0] * f.shape[2] * f.shape[3]
    if total is None:
        raise ValueError("no clean images to measure activations on")
    return (total / count).float().cpu()


def least_active(means: torch.Tensor, fraction: float) -> list[int]:
    """Indices of the ``round(fraction · D)`` (at least 1) channels with the lowest mean, lowest first."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"pruning fraction must be in (0, 1), got {fraction}")
    k = max(1, round(fraction * means.numel()))
    return torch.argsort(means, stable=True)[:k].tolist()


def mask_channels(model: SegModel, channels: Sequence[int]) -> None:
    """Zero the classifier's input ``channels`` with a pruning mask (kept through training)."""
    weight = model.classifier.weight
    mask = torch.ones_like(weight)
    mask[:, list(channels)] = 0
    prune.custom_from_mask(model.classifier, "weight", mask)


def make_permanent(model: SegModel) -> None:
    """Fold the pruning mask into the weight (an ordinary ``state_dict`` afterwards)."""
    if prune.is_pruned(model.classifier):
        prune.remove(model.classifier, "weight")


def prune_channels(model: SegModel, channels: Sequence[int]) -> SegModel:
    """Zero feature ``channels`` of ``model`` permanently (in place); returns ``model``."""
    mask_channels(model, channels)
    make_permanent(model)
    return model


def _clean_batches(images, batch_size: int, progress: bool, what: str) -> Iterable[torch.Tensor]:
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(what, total=len(images))
        for start in range(0, len(images), batch_size):
            yield to_tensor(images[start:start + batch_size])
            bar.advance(task, min(batch_size, len(images) - start))


@DEFENSES.register("pruning")
def pruning(ctx: DefenseContext, fractions: list[float] = (0.01, 0.05, 0.10), clean_fraction_used: float = 0.1,
            finetune_epochs: int = 0, lr: float | None = None) -> dict[str, Any]:
    """Prune the least-active ``fractions`` of feature channels, measured on a clean
    ``clean_fraction_used`` of the training split; fine-tune on it for ``finetune_epochs`` after
    (0: prune only)."""
    subset = clean_fraction(ctx.train, clean_fraction_used, ctx.cfg.seed)
    images = resized_images([subset[i] for i in range(len(subset))], ctx.size)
    means = channel_activation_means(ctx.model, _clean_batches(images, ctx.cfg.eval_batch_size, ctx.progress,
                                                               "clean activations"))
    rows = []
    for fraction in fractions:
        channels = least_active(means, fraction)
        model = ctx.backdoored_copy()
        mask_channels(model, channels)
        if finetune_epochs:
            train_like_run(model, subset, ctx.cfg, ctx.work_dir("pruning") / f"{fraction:g}", epochs=finetune_epochs,
                           lr=lr)
        make_permanent(model)
        rows.append({"fraction": fraction, "channels": channels, "n_channels": len(channels),
                     "of_channels": int(means.numel()), **ctx.evaluate(model.eval())})
    return {"kind": "mitigation", "before": ctx.before_metrics(), "n_clean_images": len(subset),
            "activation_means": means.tolist(), "rows": rows}
