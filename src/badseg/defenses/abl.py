"""Anti-Backdoor Learning (Li et al. 2021) adapted to segmentation (BADSEG §7, Table 15a, Fig. 5a–c).

The defender trains its own model from the poisoned training set, in four steps (each resumes
from its own ``defenses/abl/<step>/last.pt``):

1. ``tuning_epochs`` with the flooding loss ``|L − γ| + γ`` on the batch loss (γ = ``gamma``):
   once the loss reaches γ it is pushed back up, so easy-to-learn (poisoned) images end far
   below the rest;
2. isolation: every training image's loss (mean pixel cross-entropy over its non-ignore pixels,
   at the model's input size, no augmentation); the lowest ``isolation_fraction`` is isolated;
3. the rest of the run's epochs on the other images (plain cross-entropy);
4. ``unlearn_epochs`` of gradient ascent on the isolated images (loss ``−L``, ``unlearn_lr``).

Reported: isolation precision and recall against the true poisoned set, ASR / PBA / CBA of the
final model next to the run's own, and the KDE of the step-2 losses, clean vs poisoned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from badseg.data.subset import Subset
from badseg.data.types import IGNORE_INDEX
from badseg.defenses.base import DEFENSES, DefenseContext, to_tensor, train_like_run
from badseg.data.resize import resize_pair


def flooding(gamma: float):
    """``|CE − γ| + γ`` on the batch's mean pixel cross-entropy (ABL's isolation loss)."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        return (ce - gamma).abs() + gamma

    return loss


def ascent(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``−CE``: gradient ascent on the isolated images (ABL's unlearning)."""
    return -F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


@torch.inference_mode()
def per_image_losses(model: torch.nn.Module, dataset, size: tuple[int, int], batch_size: int = 8,
                     progress: bool = False) -> np.ndarray:
    """Mean pixel cross-entropy (ignore pixels excluded) of every sample of ``dataset`` at ``size``
    → float N (NaN for an image with no labelled pixel)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("per-image losses", total=len(dataset))
        for start in range(0, len(dataset), batch_size):
            pairs = [resize_pair(s.image, s.label, size) for s in (dataset[i] for i in
                                                                 range(start, min(len(dataset), start + batch_size)))]
            x = to_tensor(np.stack([p[0] for p in pairs])).to(device)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
            ce = F.cross_entropy(model(x), y, ignore_index=IGNORE_INDEX, reduction="none")
            valid = (y != IGNORE_INDEX).flatten(1)
            per = (ce.flatten(1) * valid).sum(1) / valid.sum(1)
            out.append(per.cpu().double().numpy())
            bar.advance(task, len(pairs))
    return np.concatenate(out)


def isolate(losses: np.ndarray, fraction: float) -> list[int]:
    """Indices of the ``round(fraction · N)`` (at least 1) lowest losses (NaN never isolated)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"isolation fraction must be in (0, 1), got {fraction}")
    k = max(1, round(fraction * len(losses)))
    order = np.argsort(np.where(np.isnan(losses), np.inf, losses), kind="stable")
    return sorted(order[:k].tolist())


def isolation_quality(isolated: list[int], poisoned: list[int]) -> dict[str, float]:
    """Precision (isolated that are poisoned) and recall (poisoned that are isolated)."""
    hit = len(set(isolated) & set(poisoned))
    return {"precision": hit / len(isolated) if isolated else 0.0,
            "recall": hit / len(poisoned) if poisoned else 0.0, "n_isolated": len(isolated),
            "n_isolated_poisoned": hit, "n_poisoned": len(poisoned)}


@DEFENSES.register("abl")
def abl(ctx: DefenseContext, isolation_fraction: float = 0.01, gamma: float = 0.5, tuning_epochs: int = 2,
        epochs: int | None = None, unlearn_epochs: int = 5, unlearn_lr: float = 1e-4) -> dict[str, Any]:
    """ABL from the run's poisoned training set with the run's model and recipe (``epochs``
    defaults to the run's; ``tuning_epochs`` of them are the flooded isolation phase)."""
    from badseg.models import build_model
    from badseg.report.defense_figures import save_score_kde

    cfg = ctx.cfg
    total = cfg.train.epochs if epochs is None else epochs
    if not 0 < tuning_epochs < total:
        raise ValueError(f"tuning_epochs must be in (0, {total}), got {tuning_epochs}")
    work = ctx.work_dir("abl")
    model = build_model(cfg.model.name, ctx.train.spec.num_classes, pretrained=cfg.model.pretrained)
    train_like_run(model, ctx.poisoned_train, cfg, work / "tune", epochs=tuning_epochs, loss_fn=flooding(gamma))
    losses = per_image_losses(model.to(ctx.device), ctx.poisoned_train, ctx.size, cfg.eval_batch_size, ctx.progress)
    isolated = isolate(losses, isolation_fraction)
    rest = Subset(ctx.poisoned_train, [i for i in range(len(ctx.poisoned_train)) if i not in set(isolated)])
    train_like_run(model, rest, cfg, work / "train", epochs=total - tuning_epochs)
    train_like_run(model, Subset(ctx.poisoned_train, isolated), cfg, work / "unlearn", epochs=unlearn_epochs,
                   lr=unlearn_lr, loss_fn=ascent)
    poisoned = list(ctx.poisoned_train.poisoned_indices)
    is_p = np.zeros(len(losses), bool)
    is_p[poisoned] = True
    save_score_kde(losses[~is_p], losses[is_p], ctx.figure_path("abl"),
                   title=f"ABL: per-image loss after {tuning_epochs} flooded epochs (γ={gamma})",
                   xlabel="mean pixel cross-entropy", labels=("clean training images", "poisoned training images"))
    return {"kind": "mitigation", "before": ctx.before_metrics(),
            "rows": [{"isolation_fraction": isolation_fraction, **ctx.evaluate(model.eval())}],
            "isolation": isolation_quality(isolated, poisoned), "isolated": isolated,
            "losses_clean": losses[~is_p].tolist(), "losses_poisoned": losses[is_p].tolist()}
