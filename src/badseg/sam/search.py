"""BADSEG-SAM stage 2: the Gumbel-Softmax trigger search (§5.2, App. B) with a SAM surrogate (§8).

"BADSEG-SAM uses the first two stages of BADSEG to optimize trigger parameters for mask
manipulation": the relaxed trigger of ``stages.relaxed`` is rendered on the prompted segment,
the frozen surrogate predicts the prompt's mask on the triggered image, and the mask loss
(``sam.loss``) against the attack's target mask replaces eq. 3's cross-entropy; the stealth
budget is the same as in the class search (``stages.objective.stealth_terms``).

Search space: Table 20's object grid (Mask-Distortion, -Erasure: the trigger is sized by the
prompted object) or B2O's grid (Mask-Injection: sized by the fabricated silhouette); position
is the attack's own (the centre of the prompted segment), so shape, size, quantity and
intensity are searched. The surrogate is the run's base promptable model (trained on clean
prompts of the training split), the attacker's stand-in for the public pretrained SAM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from badseg.build import datasets_for
from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng
from badseg.sam.config import SamRunConfig
from badseg.sam.data import build_prompt_set, prompt_tensors, resized
from badseg.sam.loss import MaskLossConfig, mask_loss
from badseg.sam.targets import MaskAttack
from badseg.sam.victims import PromptableModel
from badseg.stages.objective import stealth_terms
from badseg.stages.relaxed import RelaxedTrigger, SearchSet, pack_search_set, plan_options, with_pattern
from badseg.stages.trigger_search import SearchResult, SearchSettings, optimize_trigger, sweep_options, \
    write_search_outputs
from badseg.triggers import TRIGGER_GRIDS


def sam_search_space(attack: MaskAttack) -> dict[str, tuple]:
    """Table 20's options for a BADSEG-SAM attack (position: the centre of the prompted segment)."""
    grid = dict(TRIGGER_GRIDS["b2o" if attack.name == "injection" else "o2b"])
    grid["position"] = ("centre",)
    return with_pattern(grid, attack.trigger.pattern)


def build_sam_search_set(dataset: SegDataset, attack: MaskAttack, space: dict[str, tuple], size: tuple[int, int],
                         seed: int = 0, limit: int | None = None) -> SearchSet:
    """The attack's prompted segments with their target masks (``targets``, 0/1) and stamp plans.

    Image ``i`` draws the attack from ``sample_rng(seed, i)`` at the model's input size; the
    prompts are in ``extra["coords"]`` (N, 1, 2, 2) and ``extra["labels"]`` (N, 1, 2).
    """
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    q_max = max(space["quantity"])
    for i in range(len(dataset)):
        if limit is not None and len(rows) >= limit:
            break
        image, label, instances, sid = resized(dataset, i, size)
        rng = sample_rng(seed, i)
        p = attack.poison(image, label, instances, rng)
        if isinstance(p, str):
            skipped[p] = skipped.get(p, 0) + 1
            continue
        region = p.target if attack.name == "injection" else p.truth
        cols = np.flatnonzero(region.any(axis=0))
        plan = plan_options([(region, int(cols[-1] - cols[0] + 1))], region, space["position"], space["size"], q_max,
                            attack.trigger.min_size_px, rng)
        coords, labels = prompt_tensors([p.prompt])
        rows.append({"image": image, "label": p.target.astype(np.int64), "clean": p.truth.astype(np.int64),
                     "asr": p.target.copy(), "plan": plan,
                     "scale": (1.0, 1.0), "id": sid, "extra": {"coords": coords, "labels": labels}})
    if not rows:
        raise ValueError(f"Mask-{attack.name} applies to none of the {len(dataset)} surrogate images ({skipped})")
    return pack_search_set(rows, skipped)


class SamObjective:
    """Mask loss of the frozen promptable surrogate against the target masks, plus the stealth budget.

    Returns ``{"loss", "attack" (mask loss), "stealth", "psnr", "ssim"}``.
    """

    def __init__(self, model: PromptableModel, loss: MaskLossConfig = MaskLossConfig(), stealth_weight: float = 1.0,
                 psnr_min: float = 35.0) -> None:
        self.model = model.eval().requires_grad_(False)
        self.loss, self.stealth_weight, self.psnr_min = loss, stealth_weight, psnr_min

    def __call__(self, triggered: torch.Tensor, batch: SearchSet) -> dict[str, torch.Tensor]:
        logits, iou = self.model(triggered, batch.extra["coords"], batch.extra["labels"])
        attack = mask_loss(logits, iou, batch.targets[:, None].float(), self.loss)
        stealth, quality, similarity = stealth_terms(batch.images, triggered, self.psnr_min)
        return {"loss": attack + self.stealth_weight * stealth, "attack": attack, "stealth": stealth,
                "psnr": quality.detach(), "ssim": similarity}


def search_sam_trigger(cfg: SamRunConfig, out: str | Path, log: Callable[[str], None] = print,
                       progress: bool = True) -> SearchResult:
    """Stages 1–2 of BADSEG-SAM: the base model (trained or reused) as surrogate, then the search
    on up to ``cfg.search_images`` training images → ``out/trigger.json``, ``out/trigger_search.png``."""
    from badseg.sam.experiment import sam_attack, train_stage

    out = Path(out)
    train, _ = datasets_for(cfg)
    attack = sam_attack(cfg, train)
    size = tuple(cfg.data.size)
    clean_items, _ = build_prompt_set(train, size, cfg.finetune.prompts_per_image, cfg.attack.prompt_kind, cfg.seed,
                                      min_area=cfg.data.min_area)
    surrogate, _ = train_stage(cfg, cfg.base, clean_items, Path(cfg.base.dir) if cfg.base.dir else out / "base", log=log)
    space = sam_search_space(attack)
    data = build_sam_search_set(train, attack, space, size, cfg.seed, cfg.search_images)
    s = cfg.search
    renderer = RelaxedTrigger(space, cfg.trigger.min_size_px)
    objective = SamObjective(surrogate, MaskLossConfig(**cfg.loss.model_dump()), s.stealth_weight, s.psnr_min)
    settings = SearchSettings(s.steps, s.batch_size, s.lr, s.tau_start, s.tau_end, cfg.seed)
    log(f"searching the Mask-{attack.name} trigger on {len(data)} surrogate images ({s.steps} steps)")
    result = optimize_trigger(data, renderer, objective, settings, progress)
    sweep_options(result, data, renderer, objective)
    write_search_outputs(result, out, title=f"BADSEG-SAM Mask-{attack.name}: trigger search",
                         extra={"surrogate_weights": surrogate.weights, "attack": attack.describe()})
    return result
