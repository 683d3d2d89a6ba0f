"""An attack = selector + placement + trigger + relabel policy (DESIGN §3).

``Attack.poison(sample, rng)`` returns ``Poisoned`` (image, label, ASR region, trigger
mask, record) or ``Skipped`` (the reason) — never a half-poisoned sample.
Nothing here knows a dataset's file layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from badseg.attacks.placement import PLACEMENTS
from badseg.attacks.regions import Region, Selector
from badseg.data.types import DatasetSpec, Sample
from badseg.registry import Registry
from badseg.triggers import Stamp, TriggerSpec, stamp_all

ATTACKS: Registry = Registry("attack")

#: relabel(label, regions, victim) -> the pixels that become the target class (bool HxW).
Relabel = Callable[[np.ndarray, "list[Region]", int], np.ndarray]


def relabel_class(label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
    """Class map: every victim-class pixel in the image flips (O2O, O2B, B2B)."""
    return label == victim


def relabel_regions(label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
    """Region-scoped: only victim pixels inside relabelled regions flip (INS, CON, B2O)."""
    out = np.zeros(label.shape, dtype=bool)
    for r in regions:
        if r.relabel:
            out |= r.mask
    return out & (label == victim)


@dataclass
class Poisoned:
    """A poisoned sample.

    Attributes:
        image: uint8 HxWx3 with the trigger stamped.
        label: int64 HxW, ASR region set to the target class.
        asr_mask: bool HxW, the pixels ASR is counted over (DESIGN §2).
        trigger_mask: bool HxW, pixels the trigger may have changed.
        decoy_mask: bool HxW, triggered victim pixels that must NOT flip (CON), or None.
        record: JSON-able description (stamps, regions, pixel counts).
    """

    image: np.ndarray
    label: np.ndarray
    asr_mask: np.ndarray
    trigger_mask: np.ndarray
    decoy_mask: np.ndarray | None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    reason: str


@dataclass(frozen=True)
class Plan:
    """The image-independent part of poisoning: regions and stamps."""

    regions: list[Region]
    stamps: list[list[Stamp]]


@dataclass(frozen=True)
class Attack:
    """A composed attack; build one with ``build_attack``."""

    name: str
    spec: DatasetSpec
    victim: int
    target: int
    trigger: TriggerSpec
    select: Selector
    placement: str
    relabel: Relabel

    def plan(self, label: np.ndarray, instances: np.ndarray | None, image: np.ndarray | None,
             rng: np.random.Generator, test: bool = False) -> Plan | Skipped:
        regions = self.select(label, instances, image, rng, test)
        if isinstance(regions, str):
            return Skipped(regions)
        place = PLACEMENTS.get(self.placement)
        avoid = label == self.victim
        stamps = []
        for region in regions:
            size = self.trigger.size_px(region.width)
            placed = place(region.mask, avoid, size, self.trigger.quantity, rng)
            if isinstance(placed, str):
                return Skipped(placed)
            stamps.append(placed)
        return Plan(regions, stamps)

    def applies(self, label: np.ndarray, instances: np.ndarray | None, rng: np.random.Generator,
                test: bool = False) -> str | None:
        """Skip reason from labels alone (None: the attack applies).

        Given the sample's own generator, it makes the same draws as ``poison``, so a
        sample found applicable here is poisoned the same way later.
        """
        plan = self.plan(label, instances, None, rng, test)
        return plan.reason if isinstance(plan, Skipped) else None

    def poison(self, sample: Sample, rng: np.random.Generator, test: bool = False) -> Poisoned | Skipped:
        """Stamp and relabel ``sample``; ``test`` selects the poisoned-test-set behaviour."""
        plan = self.plan(sample.label, sample.instances, sample.image, rng, test)
        if isinstance(plan, Skipped):
            return plan
        flat = [s for group in plan.stamps for s in group]
        image, trigger_mask = stamp_all(sample.image, self.trigger, flat)
        asr = self.relabel(sample.label, plan.regions, self.victim)
        label = sample.label.copy()
        label[asr] = self.target
        decoy = np.zeros_like(asr)
        for r in plan.regions:
            if not r.relabel:
                decoy |= r.mask
        decoy &= sample.label == self.victim
        record = {
            "stamps": [s.to_dict() for s in flat],
            "regions": [{"relabel": r.relabel, "width_px": r.width, **r.info} for r in plan.regions],
            "asr_pixels": int(asr.sum()),
            "decoy_pixels": int(decoy.sum()),
        }
        return Poisoned(image, label, asr, trigger_mask, decoy if decoy.any() else None, record)

    def describe(self) -> dict[str, Any]:
        return {
            "attack": self.name,
            "victim": self.spec.classes[self.victim],
            "target": self.spec.classes[self.target],
            "placement": self.placement,
            "trigger": self.trigger.to_dict(),
        }


def build_attack(name: str, spec: DatasetSpec, victim: str | int, target: str | int,
                 trigger: TriggerSpec | None = None, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` for dataset ``spec``.

    Example:
        >>> attack = build_attack("o2b", spec, "car", "road", TriggerSpec(size=1 / 4))
    """
    from badseg.attacks import vectors  # noqa: F401  (registers the vectors)

    return ATTACKS.build(name, spec=spec, victim=spec.class_id(victim), target=spec.class_id(target),
                         trigger=trigger or TriggerSpec(), **kwargs)
