"""An attack = selector + placement + trigger + relabel policy (DESIGN §3).

``Attack.poison(sample, rng)`` returns ``Poisoned`` (image, label, ASR region, trigger
mask, record) or ``Skipped`` (the reason) — never a half-poisoned sample.
Nothing here knows a dataset's file layout.

Two optional hooks let the prior attacks (``attacks/baselines.py``) use the same engine:
``render`` draws the trigger (default: blend the placed stamps; HBA draws a fixed line,
ConSeg also rebuilds context) and ``relabel_extra`` edits the label map beyond the ASR
region (IBA's pixel random labelling, the other pairs of an HBA attack matrix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np

from badseg.attacks.placement import COVER, PLACEMENTS, LabelPlacement
from badseg.attacks.regions import Region, Selector
from badseg.data.types import DatasetSpec, Sample
from badseg.registry import Registry
from badseg.triggers import Stamp, TriggerSpec, cover, stamp_all

ATTACKS: Registry = Registry("attack")

#: relabel(label, regions, victim) -> the pixels that become the target class (bool HxW).
Relabel = Callable[[np.ndarray, "list[Region]", int], np.ndarray]


def relabel_class(label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
    """Class map: every victim-class pixel in the image flips (O2O, O2B, B2B)."""
    return label == victim


def relabel_regions(label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
    """Region-scoped: only victim pixels inside relabelled regions flip (INS, CON, B2O)."""
    return relabel_region_pixels(label, regions, victim) & (label == victim)


def relabel_region_pixels(label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
    """Every pixel of the relabelled regions flips, whatever its class (OFBA's triggered objects)."""
    out = np.zeros(label.shape, dtype=bool)
    for r in regions:
        if r.relabel:
            out |= r.mask
    return out


@dataclass(frozen=True)
class RelabelClasses:
    """Class map over several classes: every pixel of ``classes`` flips (HBA N→1 and matrix)."""

    classes: tuple[int, ...]

    def __call__(self, label: np.ndarray, regions: list[Region], victim: int) -> np.ndarray:
        return np.isin(label, self.classes)


#: relabel_extra(original label, poisoned label, ASR mask, rng) -> the final label map (int64 HxW).
#: Label edits outside the ASR region; it may draw from ``rng`` (after the plan's draws).
LabelEdit = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


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


#: render(image, label, trigger, plan) -> (poisoned uint8 HxWx3, trigger mask bool HxW, what was
#: drawn as JSON-able dicts). Deterministic: it draws no randomness.
Render = Callable[[np.ndarray, np.ndarray, TriggerSpec, Plan], "tuple[np.ndarray, np.ndarray, list[dict]]"]


def render_stamps(image: np.ndarray, label: np.ndarray, trigger: TriggerSpec,
                  plan: Plan) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The default renderer: blend every placed stamp (``stamp_all``)."""
    flat = [s for group in plan.stamps for s in group]
    image, mask = stamp_all(image, trigger, flat)
    return image, mask, [s.to_dict() for s in flat]


def render_cover(image: np.ndarray, label: np.ndarray, trigger: TriggerSpec,
                 plan: Plan) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The renderer of the ``cover`` placement: the trigger's pattern, tiled in image coordinates
    every ``trigger.size_px(region.width)`` pixels (its ``size`` is the texture's period, not a
    stamp's width), blended over every selected region's pixels at
    ``trigger.intensity_for(region area)``."""
    mask = np.zeros(label.shape, dtype=bool)
    drawn = []
    for region in plan.regions:
        tile = trigger.size_px(region.width)
        area = int(region.mask.sum())
        alpha = trigger.intensity_for(area)
        image = cover(image, trigger, region.mask & ~mask, tile, alpha)
        mask |= region.mask
        drawn.append({"cover_pixels": area, "tile_px": tile, "intensity": alpha})
    return image, mask, drawn


def _describe(part: Any) -> Any:
    """A JSON-able description of a composed part (a name, or a dataclass's fields)."""
    if isinstance(part, str):
        return part
    if is_dataclass(part):
        return {"kind": type(part).__name__, **asdict(part)}
    return getattr(part, "__name__", type(part).__name__)


@dataclass(frozen=True)
class Attack:
    """A composed attack; build one with ``build_attack``.

    ``placement`` is a registered name (``PLACEMENTS``) or a ``LabelPlacement`` object that
    also sees the label map and the test flag (IBA); it is only used for the regions the
    selector returns, so a selector returning no regions (HBA) needs none. ``render`` draws
    the trigger (``render_cover`` under the ``cover`` placement); ``relabel_extra`` (optional) edits labels outside the ASR region.
    """

    name: str
    spec: DatasetSpec
    victim: int
    target: int
    trigger: TriggerSpec
    select: Selector
    placement: str | LabelPlacement
    relabel: Relabel
    render: Render = render_stamps
    relabel_extra: LabelEdit | None = None

    def __post_init__(self) -> None:
        if self.placement == COVER and self.render is render_stamps:
            object.__setattr__(self, "render", render_cover)
        if self.trigger.small_intensity is not None and self.render is not render_cover:
            raise ValueError(f"trigger.small_intensity is the blend of small regions under placement 'cover'; this "
                             f"attack draws stamps (placement {self.placement!r}), which it would leave unchanged")

    def plan(self, label: np.ndarray, instances: np.ndarray | None, image: np.ndarray | None,
             rng: np.random.Generator, test: bool = False) -> Plan | Skipped:
        regions = self.select(label, instances, image, rng, test)
        if isinstance(regions, str):
            return Skipped(regions)
        avoid = label == self.victim
        stamps, reason = [], None
        for region in regions:
            size = self.trigger.size_px(region.width)
            if isinstance(self.placement, str):
                placed = PLACEMENTS.get(self.placement)(region.mask, avoid, size, self.trigger.quantity, rng)
            else:
                placed = self.placement(region.mask, avoid, size, self.trigger.quantity, rng, label, test)
            if isinstance(placed, str):
                if not region.optional:
                    return Skipped(placed)
                reason, placed = placed, []
            stamps.append(placed)
        if reason is not None and not any(stamps):
            return Skipped(reason)
        return Plan(regions, stamps)

    @property
    def needs_image(self) -> bool:
        """Whether deciding applicability needs the image, not only the labels (CON's colour condition)."""
        return bool(getattr(self.select, "needs_image", False))

    def applies(self, label: np.ndarray, instances: np.ndarray | None, rng: np.random.Generator,
                test: bool = False, image: np.ndarray | None = None) -> str | None:
        """Skip reason (None: the attack applies), from labels alone unless ``needs_image``.

        Given the sample's own generator, it makes the same draws as ``poison``, so a
        sample found applicable here is poisoned the same way later.
        """
        plan = self.plan(label, instances, image, rng, test)
        return plan.reason if isinstance(plan, Skipped) else None

    def poison(self, sample: Sample, rng: np.random.Generator, test: bool = False) -> Poisoned | Skipped:
        """Stamp and relabel ``sample``; ``test`` selects the poisoned-test-set behaviour."""
        plan = self.plan(sample.label, sample.instances, sample.image, rng, test)
        if isinstance(plan, Skipped):
            return plan
        image, trigger_mask, drawn = self.render(sample.image, sample.label, self.trigger, plan)
        asr = self.relabel(sample.label, plan.regions, self.victim)
        label = sample.label.copy()
        label[asr] = self.target
        if self.relabel_extra is not None:
            label = self.relabel_extra(sample.label, label, asr, rng)
        decoy = np.zeros_like(asr)
        for r in plan.regions:
            if not r.relabel:
                decoy |= r.mask
        decoy &= sample.label == self.victim
        record = {
            "stamps": drawn,
            "regions": [{"relabel": r.relabel, "width_px": r.width, **r.info} for r in plan.regions],
            "asr_pixels": int(asr.sum()),
            "decoy_pixels": int(decoy.sum()),
        }
        if self.relabel_extra is not None:
            record["other_relabelled_pixels"] = int(((label != sample.label) & ~asr).sum())
        return Poisoned(image, label, asr, trigger_mask, decoy if decoy.any() else None, record)

    def describe(self) -> dict[str, Any]:
        out = {
            "attack": self.name,
            "victim": self.spec.classes[self.victim],
            "target": self.spec.classes[self.target],
            "placement": _describe(self.placement),
            "trigger": self.trigger.to_dict(),
        }
        if self.render is not render_stamps:
            out["render"] = _describe(self.render)
        if self.relabel_extra is not None:
            out["relabel_extra"] = _describe(self.relabel_extra)
        return out
