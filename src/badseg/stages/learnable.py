"""A learnability-aware stage-2 objective: rank triggers by what a victim *learns* under its augmentation.

The paper's objective (eq. 3, ``SurrogateObjective``) scores a trigger by how a frozen clean
surrogate reacts to it. A clean surrogate has never seen any trigger, so its loss moves by
~1e-5–1e-2 between options and cannot tell a trigger a victim will learn from one it will not
(docs/results.md, "Stage 2 on CamVid"). This objective instead alternates, as LIRA (Doan et al.,
ICCV 2021) alternates its trigger generator and classifier:

1. ``update``: a copy of the surrogate takes ``inner_steps`` Adam steps on poisoned surrogate
   data — a ``poison_fraction`` of each batch rendered with the current relaxed trigger
   (weights detached) against the poisoned labels, the rest clean — after the victim's
   augmentation (``augment_batch``: random resize, crop, flip; ``AugmentConfig``);
2. ``__call__``: the attack loss is the fine-tuned surrogate's cross-entropy on *held-out*
   triggered surrogate images (never trained on) against the poisoned labels, again after the
   victim's augmentation, plus the stealth budget of ``SurrogateObjective``.

A trigger option that the augmentation removes or renders invisible is then neither learned
in step 1 nor rewarded in step 2 (its rendered pixels are gone before the surrogate sees
them), while one that survives is learned and lowers the held-out loss.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from badseg.data.types import IGNORE_INDEX
from badseg.stages.objective import stealth_terms
from badseg.stages.relaxed import RelaxedTrigger, SearchSet
from badseg.train.augment import AugmentConfig, crop_origin


def holdout_split(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held-out) indices of ``range(n)``, each sorted: ``round(holdout · n)`` (at least one,
    at most n − 1) held out, drawn without replacement from ``torch.Generator().manual_seed(seed)``."""
    if n < 2:
        raise ValueError(f"a held-out split needs at least 2 surrogate images, got {n}")
    k = min(n - 1, max(1, round(holdout * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[k:]), sorted(order[:k])


def split_search_set(data: SearchSet, holdout: float, seed: int) -> tuple[SearchSet, SearchSet]:
    """(fine-tuning part, held-out part) of ``data`` by ``holdout_split``."""
    kept, held = holdout_split(len(data), holdout, seed)
    return data.batch(kept), data.batch(held)


def augment_batch(images: torch.Tensor, maps: list[torch.Tensor], cfg: AugmentConfig,
                  gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The victim's augmentation, differentiable in ``images``: random rescale, crop, flip.

    ``images`` float (B, 3, H, W); ``maps`` integer or bool (B, H, W) maps that move with them
    (labels: nearest neighbour, pad 255; bool maps pad False). One scale from
    ``cfg.scale_range`` per batch (images bilinear, antialiased when shrinking, as
    ``train.augment.resize_pair``), then per image a crop of ``cfg.crop_size`` (padded when the
    image is smaller; with ``cfg.cat_max_ratio`` < 1 re-drawn as ``train.augment.crop_origin``
    does, judged on the first map, a label map) and a flip with probability ``cfg.hflip_p``;
    all draws from ``gen``.
    """
    b, _, h, w = images.shape
    lo, hi = cfg.scale_range
    scale = lo + (hi - lo) * float(torch.rand((), generator=gen))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                               antialias=size[0] < h or size[1] < w)
        maps = [F.interpolate(m[:, None].float(), size=size, mode="nearest-exact")[:, 0].to(m.dtype) for m in maps]
    if cfg.crop_size is not None:
        ch, cw = cfg.crop_size
        ph, pw = max(ch - size[0], 0), max(cw - size[1], 0)
        if ph or pw:
            images = F.pad(images, (0, pw, 0, ph))
            maps = [F.pad(m, (0, pw, 0, ph), value=IGNORE_INDEX if m.dtype != torch.bool else False) for m in maps]
        ys = torch.randint(0, images.shape[2] - ch + 1, (b,), generator=gen).tolist()
        xs = torch.randint(0, images.shape[3] - cw + 1, (b,), generator=gen).tolist()
        if cfg.cat_max_ratio < 1.0 and maps:
            draw = lambda n: int(torch.randint(0, n, (), generator=gen))  # noqa: E731
            origins = [crop_origin(maps[0][i], (ch, cw), cfg.cat_max_ratio, draw, (y, x))
                       for i, (y, x) in enumerate(zip(ys, xs))]
            ys, xs = [y for y, _ in origins], [x for _, x in origins]
        images = torch.stack([images[i, :, y:y + ch, x:x + cw] for i, (y, x) in enumerate(zip(ys, xs))])
        maps = [torch.stack([m[i, y:y + ch, x:x + cw] for i, (y, x) in enumerate(zip(ys, xs))]) for m in maps]
    flip = (torch.rand(b, generator=gen) < cfg.hflip_p).to(images.device)
    if bool(flip.any()):
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        maps = [torch.where(flip[:, None, None], m.flip(-1), m) for m in maps]
    return images, maps


class LearnabilityObjective:
    """Alternating surrogate fine-tuning and held-out attack loss under the victim's augmentation.

    Args:
        model: the stage-1 surrogate; a copy is fine-tuned, the original is left untouched.
        train: the surrogate images the copy is fine-tuned on (``split_search_set``); the
            optimiser's batches are the held-out rest.
        renderer: the relaxed trigger (renders the poisoned fine-tuning images).
        augment: the victim's augmentation (``None``: none).
        inner_steps, lr, batch_size: fine-tuning steps per trigger step, Adam learning rate,
            fine-tuning batch size.
        poison_fraction: share of each fine-tuning batch that is triggered and relabelled.
        stealth_weight, psnr_min: the stealth budget (``SurrogateObjective``).
        seed: seeds the generator of batches, poisoned picks and augmentation.

    ``__call__`` returns ``SurrogateObjective``'s terms (``loss``, ``attack``, ``stealth``,
    ``asr_ce``, ``psnr``, ``ssim``) plus ``finetune`` (the last fine-tuning loss).
    """

    def __init__(self, model: nn.Module, train: SearchSet, renderer: RelaxedTrigger,
                 augment: AugmentConfig | None = None, inner_steps: int = 1, lr: float = 1e-3, batch_size: int = 4,
                 poison_fraction: float = 0.5, stealth_weight: float = 1.0, psnr_min: float = 35.0,
                 seed: int = 0) -> None:
        if not 0.0 < poison_fraction <= 1.0:
            raise ValueError(f"poison_fraction must be in (0, 1], got {poison_fraction}")
        self.model = copy.deepcopy(model)
        self.train = train
        self.renderer = renderer
        self.augment = augment
        self.inner_steps = inner_steps
        self.batch_size = batch_size
        self.poison_fraction = poison_fraction
        self.stealth_weight = stealth_weight
        self.psnr_min = psnr_min
        self.gen = torch.Generator().manual_seed(seed)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.last_finetune = float("nan")

    def _augment(self, images: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return (images, maps) if self.augment is None else augment_batch(images, maps, self.augment, self.gen)

    def update(self, weights: dict[str, torch.Tensor]) -> float:
        """Fine-tune the surrogate copy on poisoned data rendered with ``weights`` (detached); the last loss."""
        weights = {a: w.detach() for a, w in weights.items()}
        self.model.train().requires_grad_(True)
        for _ in range(self.inner_steps):
            idx = torch.randperm(len(self.train), generator=self.gen)[: self.batch_size]
            batch = self.train.batch(idx)
            poisoned = torch.rand(len(idx), generator=self.gen) < self.poison_fraction
            poisoned[int(torch.randint(len(idx), (), generator=self.gen))] = True  # at least one per batch
            poisoned = poisoned.to(batch.images.device)
            with torch.no_grad():
                triggered = self.renderer.render(batch, weights)
            images = torch.where(poisoned[:, None, None, None], triggered, batch.images)
            labels = torch.where(poisoned[:, None, None], batch.targets, batch.labels)
            images, (labels,) = self._augment(images, [labels])
            loss = F.cross_entropy(self.model(images), labels, ignore_index=IGNORE_INDEX)
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            self.last_finetune = float(loss.detach())
        return self.last_finetune

    def __call__(self, triggered: torch.Tensor, batch: SearchSet) -> dict[str, torch.Tensor]:
        self.model.eval().requires_grad_(False)
        images, (targets, asr) = self._augment(triggered, [batch.targets, batch.asr])
        ce = F.cross_entropy(self.model(images), targets, ignore_index=IGNORE_INDEX, reduction="none")
        labelled = targets != IGNORE_INDEX
        attack = ce[labelled].mean() if labelled.any() else images.sum() * 0
        asr_ce = ce[asr].mean() if asr.any() else attack * 0
        stealth, quality, similarity = stealth_terms(batch.images, triggered, self.psnr_min)
        return {"loss": attack + self.stealth_weight * stealth, "attack": attack, "stealth": stealth,
                "asr_ce": asr_ce.detach(), "psnr": quality.detach(), "ssim": similarity,
                "finetune": torch.tensor(self.last_finetune if math.isfinite(self.last_finetune) else 0.0)}


__all__ = ["LearnabilityObjective", "augment_batch", "holdout_split", "split_search_set"]
