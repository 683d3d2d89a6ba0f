"""Selectors: which parts of a sample an attack stamps and relabels (DESIGN §2).

A selector turns (label, instances, image) into ``Region``s: the pixels a stamp goes on
(or next to), the reference width that sizes the trigger, and whether the region's victim
pixels are relabelled (``relabel=False`` marks a CON decoy: triggered but left alone).
It returns a skip reason (a string) when the attack cannot be applied to the sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from badseg.attacks.placement import box_counts
from badseg.attacks.shape_bank import ShapeBank
from badseg.data.instances import CONDITIONS, Condition, Instance, meets_condition, object_instances
from badseg.data.types import DatasetSpec


@dataclass
class Region:
    """Where one group of stamps goes. ``mask`` bool HxW; ``width`` sizes the trigger.
    An ``optional`` region too small for its stamps stays unstamped instead of making the
    whole sample inapplicable."""

    mask: np.ndarray
    width: int
    relabel: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    optional: bool = False


#: select(label, instances, image | None, rng, test) -> regions or a skip reason.
#: ``image`` is None during the label-only applicability scan.
Selector = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None", np.random.Generator, bool],
                    "list[Region] | str"]


def _instance_region(inst: Instance, relabel: bool = True, optional: bool = False, **info: Any) -> Region:
    return Region(inst.mask, inst.width, relabel, {"instance_id": inst.instance_id, "area": inst.area, **info},
                  optional)


@dataclass(frozen=True)
class LargestInstance:
    """The largest victim-class instance (O2O, O2B; DESIGN §7: "centre of the largest car")."""

    spec: DatasetSpec
    victim: int
    min_area: int = 64

    def objects(self, label: np.ndarray, instances: np.ndarray | None) -> list[Instance] | str:
        """The victim instances of at least ``min_area`` pixels, or a skip reason."""
        objs = object_instances(label, instances, self.spec, [self.victim], self.min_area)
        return objs or f"no {self.spec.classes[self.victim]} instance of >= {self.min_area} px"

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        objs = self.objects(label, instances)
        return objs if isinstance(objs, str) else [_instance_region(max(objs, key=lambda o: o.area))]


@dataclass(frozen=True)
class EveryInstance(LargestInstance):
    """Every victim-class instance, largest first (O2O, O2B with ``carriers="all"``); objects
    too small to hold a stamp are left unstamped (their pixels still flip under the class map)."""

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        objs = self.objects(label, instances)
        if isinstance(objs, str):
            return objs
        return [_instance_region(o, optional=True) for o in sorted(objs, key=lambda o: -o.area)]


@dataclass(frozen=True)
class ChosenInstances:
    """``k`` victim instances chosen at random (INS; k = None means all); only they flip.

    When fewer than ``k`` instances exist, all of them are taken.
    """

    spec: DatasetSpec
    victim: int
    k: int | None = 1
    min_area: int = 64

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        objs = object_instances(label, instances, self.spec, [self.victim], self.min_area)
        if not objs:
            return f"no {self.spec.classes[self.victim]} instance of >= {self.min_area} px"
        n = len(objs) if self.k is None else min(self.k, len(objs))
        chosen = sorted(rng.choice(len(objs), size=n, replace=False).tolist())
        return [_instance_region(objs[i]) for i in chosen]


@dataclass(frozen=True)
class ConditionedInstances:
    """CON: triggered victim instances meeting ``condition`` flip; others may be decoys.

    Training: only images holding a matching instance are poisoned (the poisoning budget
    goes to samples that teach the flip, "samples that satisfy the condition and contain
    triggers", BADSEG §6.4); every matching instance is triggered and relabelled, and with
    probability ``decoy_rate`` the non-matching ones are triggered too but keep their
    labels, so the model learns trigger AND condition. The condition is a colour or a
    predicate of colour family, size and position (``badseg.data.instances.Condition``, e.g.
    ``"white&width>=40"``), so the applicability scan reads images (``needs_image``).
    Test: every instance is triggered (matching → ASR region, others → decoy region).
    """

    needs_image = True

    spec: DatasetSpec
    victim: int
    condition: str = "red"
    decoy_rate: float = 0.5
    min_area: int = 64

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            Condition(self.condition)  # raises with the valid terms

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        name = self.spec.classes[self.victim]
        objs = object_instances(label, instances, self.spec, [self.victim], self.min_area)
        if not objs:
            return f"no {name} instance of >= {self.min_area} px"
        if image is None:
            raise ValueError("the conditional attack needs the image to test the condition")
        match = [meets_condition(image, o.mask, self.condition) for o in objs]
        if not test and not any(match):
            return f"no {name} meeting the condition {self.condition!r}"
        with_decoys = test or rng.random() < self.decoy_rate
        return [_instance_region(o, m, condition_met=m) for o, m in zip(objs, match) if m or with_decoys]


@dataclass(frozen=True)
class VictimRegion:
    """All victim-class pixels as one region, sized by the image width (B2B)."""

    spec: DatasetSpec
    victim: int
    min_area: int = 64

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        mask = label == self.victim
        if mask.sum() < self.min_area:
            return f"less than {self.min_area} px of {self.spec.classes[self.victim]}"
        return [Region(mask, label.shape[1])]


@dataclass(frozen=True)
class FabricatedObject:
    """B2O: a target-shaped region fabricated inside the victim stuff.

    A real target-class silhouette from ``bank`` is scaled (1, 3/4, 1/2, 3/8, 1/4 of its
    size, largest that fits) and placed at random where its bounding box lies entirely in
    the victim region; the region's pixels become the target class and the trigger sits at
    its centre, sized by the silhouette's width.
    """

    spec: DatasetSpec
    victim: int
    bank: ShapeBank
    min_width: int = 8

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        victim = label == self.victim
        if not victim.any():
            return f"no {self.spec.classes[self.victim]} pixels"
        shape_idx = int(rng.integers(len(self.bank)))
        for scale in (1.0, 0.75, 0.5, 0.375, 0.25):
            shape = self.bank.scaled(shape_idx, scale)
            bh, bw = shape.shape
            if bw < self.min_width:
                break
            counts = box_counts(victim, bh, bw)
            cand = np.flatnonzero(counts == bh * bw)
            if cand.size:
                top, left = divmod(int(cand[int(rng.integers(cand.size))]), counts.shape[1])
                mask = np.zeros_like(victim)
                mask[top:top + bh, left:left + bw] = shape
                info = {"shape_index": shape_idx, "scale": scale, "box": [top, left, bh, bw],
                        "shape_source": self.bank.source}
                return [Region(mask, bw, True, info)]
        return f"no room for a fabricated {self.bank.class_name} in the {self.spec.classes[self.victim]} region"
