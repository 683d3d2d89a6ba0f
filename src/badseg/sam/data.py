"""Poisoned promptable data: images with K prompts each and a mask per prompt (BADSEG §8).

Every image is resized to the model's input size first (labels nearest neighbour), so segments,
prompts, stamps and masks all live at the resolution the model sees (a stamp's width in pixels is
what the model gets). Image ``i`` draws its attack from ``sample_rng(seed, i)`` and its clean
prompts from ``SeedSequence([seed, i], spawn_key=(1,))``; the poisoned images are chosen with
``SeedSequence(seed, spawn_key=(1,))`` — the same inputs give the same set, whatever the order.

The poisoning rate is a fraction of prompts: ``round(rate × N × K)`` images where the attack
applies are triggered, and in each the first prompt is the attacked one (the prompted segment
carries the trigger; its target is the attack's mask); the other K − 1 prompts of a triggered
image keep their true masks, so the trigger acts on the segment it sits on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import track
from torch.utils.data import Dataset

from badseg.data.base import SegDataset
from badseg.poisoning.dataset import sample_rng
from badseg.sam.prompts import Prompt, sample_prompt, segments
from badseg.sam.targets import MaskAttack, PoisonedPrompt
from badseg.data.resize import resize_label, resize_pair


def resized(dataset: SegDataset, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """(image uint8, label int64, instances int32 | None, id) of sample ``index`` at ``size`` (H, W)."""
    s = dataset[index]
    image, label = resize_pair(s.image, s.label, size)
    instances = None if s.instances is None else resize_label(s.instances, tuple(size)).astype(np.int32)
    return image, label, instances, s.id


def prompt_rng(seed: int, index: int) -> np.random.Generator:
    """Image ``index``'s generator for clean prompts (independent of its attack draws)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index], spawn_key=(1,)))


@dataclass
class PromptItem:
    """One image with K prompts.

    Attributes:
        id: sample id.
        image: uint8 (H, W, 3), triggered when ``poisoned.any()``.
        prompts: K prompts.
        targets: bool (K, H, W), the masks trained towards (the truth, or the attack's target).
        truths: bool (K, H, W), the correct masks on the clean image.
        poisoned: bool (K,), which prompts are attacked.
        info: the attack's record for a triggered image.
    """

    id: str
    image: np.ndarray
    prompts: list[Prompt]
    targets: np.ndarray
    truths: np.ndarray
    poisoned: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptSetRecord:
    """What building a prompt set did: sizes, which images were triggered, what was skipped."""

    n_images: int
    n_prompts: int
    n_poisoned_prompts: int
    poisoned_ids: list[str]
    n_applicable: int
    skipped: dict[str, int]
    no_segment: int


def _clean_prompts(segs: list, k: int, kind: str, rng: np.random.Generator) -> tuple[list[Prompt], np.ndarray]:
    picks = rng.choice(len(segs), size=k, replace=len(segs) < k)
    masks = np.stack([segs[int(j)].mask for j in picks])
    return [sample_prompt(m, kind, rng) for m in masks], masks


def build_prompt_set(dataset: SegDataset, size: tuple[int, int], k: int = 4, prompt_kind: str = "mixed",
                     seed: int = 0, attack: MaskAttack | None = None, rate: float = 0.0,
                     min_area: int = 64) -> tuple[list[PromptItem], PromptSetRecord]:
    """The promptable training (or clean test) set; images without a segment are left out (counted)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"poisoning rate must be in [0, 1], got {rate}")
    if rate > 0 and attack is None:
        raise ValueError("a poisoning rate > 0 needs an attack")
    items: list[PromptItem] = []
    attacked: dict[int, PoisonedPrompt] = {}
    skipped: Counter[str] = Counter()
    no_segment = 0
    for i in track(range(len(dataset)), description="prompts", transient=True, disable=len(dataset) < 50):
        image, label, instances, sid = resized(dataset, i, size)
        segs = segments(label, instances, dataset.spec, min_area)
        if not segs:
            no_segment += 1
            continue
        prompts, masks = _clean_prompts(segs, k, prompt_kind, prompt_rng(seed, i))
        items.append(PromptItem(sid, image, prompts, masks.copy(), masks, np.zeros(k, bool)))
        if attack is not None and rate > 0:
            result = attack.poison(image, label, instances, sample_rng(seed, i))
            if isinstance(result, str):
                skipped[result] += 1
            else:
                attacked[len(items) - 1] = result
    applicable = sorted(attacked)
    n = min(len(applicable), int(round(rate * len(items) * k)))
    choice = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    chosen = sorted(np.asarray(applicable, dtype=int)[choice.choice(len(applicable), size=n, replace=False)].tolist())
    for j in chosen:
        item, p = items[j], attacked[j]
        item.image = p.image
        item.prompts[0] = p.prompt
        item.targets[0], item.truths[0], item.poisoned[0] = p.target, p.truth, True
        item.info = p.info
    record = PromptSetRecord(len(items), len(items) * k, len(chosen), [items[j].id for j in chosen], len(applicable),
                             dict(skipped.most_common()), no_segment)
    return items, record


def triggered_test_set(dataset: SegDataset, attack: MaskAttack, size: tuple[int, int],
                       seed: int = 0) -> tuple[list[tuple[np.ndarray, PoisonedPrompt]], dict[str, int]]:
    """Every test image where the attack applies, as (clean image, triggered prompt), and skip counts."""
    out: list[tuple[np.ndarray, PoisonedPrompt]] = []
    skipped: Counter[str] = Counter()
    for i in track(range(len(dataset)), description="triggered test prompts", transient=True, disable=len(dataset) < 50):
        image, label, instances, _ = resized(dataset, i, size)
        result = attack.poison(image, label, instances, sample_rng(seed, i))
        if isinstance(result, str):
            skipped[result] += 1
        else:
            out.append((image, result))
    return out, dict(skipped.most_common())


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) → float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


def prompt_tensors(prompts: list[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
    """K prompts → (coords float (K, 2, 2), labels int64 (K, 2))."""
    pairs = [p.tensors() for p in prompts]
    return torch.stack([c for c, _ in pairs]), torch.stack([lab for _, lab in pairs])


class PromptTorchSet(Dataset):
    """``PromptItem``s as training tuples ``(inputs, coords, labels, targets)``.

    ``inputs`` is ``[image (3, H, W)]``, or, with ``prefix`` (the victim's cached
    ``frozen_prefix`` of each image), that list of tensors; ``targets`` float (K, H, W).
    """

    def __init__(self, items: list[PromptItem], prefix: list[list[torch.Tensor]] | None = None) -> None:
        self.items, self.prefix = items, prefix

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self.items[index]
        inputs = self.prefix[index] if self.prefix is not None else [image_tensor(item.image)]
        coords, labels = prompt_tensors(item.prompts)
        return inputs, coords, labels, torch.from_numpy(item.targets).float()
