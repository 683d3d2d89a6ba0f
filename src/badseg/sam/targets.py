"""The three BADSEG-SAM attacks: trigger placement and the attacker's target mask (BADSEG §8).

* **Mask-Distortion** — "the trigger alters the shape, location, or extent of the predicted
  mask" (§8; "distorts the boundaries", §1). The wording supports all three, so all are here:
  ``shift`` (location: the true mask moved sideways by ``fraction`` × its width, towards the side
  with more room; the default), ``dilate`` and ``erode`` (extent: a disk of radius ``fraction`` ×
  half the mask's smaller side). The default is the shift because ASR counts a prediction
  matching the target at IoU ≥ 0.5: a box shifted by half its width overlaps its original at
  IoU 1/3, so the true mask cannot pass as the target, whereas a modest dilation or erosion keeps
  IoU(truth, target) above 0.5 and a clean model would "succeed" (``iou_truth_target`` is reported).
* **Mask-Erasure** — the target is the empty mask.
* **Mask-Injection** — a spurious mask "in regions where no object exists": a real object
  silhouette (B2O's ``FabricatedObject`` and ``ShapeBank``) placed inside a stuff region, the
  prompt pointing into it; the truth for that prompt is the stuff segment under the prompt.

The trigger (``TriggerSpec``, sized by the prompted segment's width) is stamped at the centre
of the segment (placement ``centre``), so it is on the object the prompt selects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from badseg.attacks.placement import PLACEMENTS
from badseg.attacks.regions import FabricatedObject
from badseg.attacks.shape_bank import ShapeBank
from badseg.data.instances import Instance, object_instances
from badseg.data.types import DatasetSpec
from badseg.registry import Registry
from badseg.sam.prompts import Prompt, sample_prompt, segment_at
from badseg.triggers import Stamp, TriggerSpec, stamp_all

MASK_ATTACKS: tuple[str, ...] = ("distortion", "erasure", "injection")
Distortion = Literal["shift", "dilate", "erode"]
DISTORTIONS: Registry = Registry("mask distortion")


@DISTORTIONS.register("shift")
def shift_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` moved horizontally by ``round(fraction × width)`` px, towards the side with more
    room (right on ties); pixels leaving the image are dropped."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return mask.copy()
    d = max(1, int(round(fraction * (cols[-1] - cols[0] + 1))))
    room_left, room_right = cols[0], mask.shape[1] - 1 - cols[-1]
    out = np.zeros_like(mask)
    if room_right >= room_left:
        out[:, d:] = mask[:, : mask.shape[1] - d]
    else:
        out[:, : mask.shape[1] - d] = mask[:, d:]
    return out


def _disk(mask: np.ndarray, fraction: float) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    side = min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) if rows.size else 1
    r = max(1, int(round(fraction * side / 2)))
    yy, xx = np.ogrid[-r: r + 1, -r: r + 1]
    return yy**2 + xx**2 <= r * r


@DISTORTIONS.register("dilate")
def dilate_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` dilated by a disk of radius ``fraction`` × half its bounding box's smaller side."""
    return ndimage.binary_dilation(mask, _disk(mask, fraction)) if mask.any() else mask.copy()


@DISTORTIONS.register("erode")
def erode_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` eroded by the same disk (may vanish for large fractions)."""
    return ndimage.binary_erosion(mask, _disk(mask, fraction)) if mask.any() else mask.copy()


@dataclass
class PoisonedPrompt:
    """One triggered prompt: the triggered image, the prompt, the attacker's target and the truth.

    Attributes:
        image: uint8 (H, W, 3), triggered.
        prompt: where the prompt points.
        target: bool (H, W), the mask the attacker wants predicted.
        truth: bool (H, W), the correct mask for the prompt on the clean image.
        trigger_mask: bool (H, W), the stamped pixels.
        info: stamps and attack details (JSON-ready).
    """

    image: np.ndarray
    prompt: Prompt
    target: np.ndarray
    truth: np.ndarray
    trigger_mask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MaskAttack:
    """A BADSEG-SAM attack: which segment is prompted, where the trigger goes, what the target is.

    Attributes:
        name: ``distortion``, ``erasure`` or ``injection``.
        spec: the dataset's classes.
        trigger: the stamp (size as a fraction of the prompted segment's width).
        prompt_kind: ``point``, ``box`` or ``mixed``.
        distortion, fraction: the Mask-Distortion transform and its amount.
        stuff: injection: the stuff class the silhouette is fabricated in.
        bank: injection: the silhouettes (``ShapeBank``).
        min_area: smallest object instance attacked (px at the model's input).
    """

    name: str
    spec: DatasetSpec
    trigger: TriggerSpec
    prompt_kind: str = "point"
    distortion: Distortion = "shift"
    fraction: float = 0.5
    stuff: int | None = None
    bank: ShapeBank | None = None
    min_area: int = 64

    def __post_init__(self) -> None:
        if self.name not in MASK_ATTACKS:
            raise ValueError(f"unknown SAM attack {self.name!r}; valid: {', '.join(MASK_ATTACKS)}")
        if self.name == "distortion":
            DISTORTIONS.get(self.distortion)
            if not 0.0 < self.fraction <= 1.0:
                raise ValueError(f"distortion fraction must be in (0, 1], got {self.fraction}")
        if self.name == "injection" and (self.stuff is None or self.bank is None):
            raise ValueError("Mask-Injection needs a stuff class and a silhouette bank")

    def target_mask(self, truth: np.ndarray) -> np.ndarray:
        """Distortion / erasure target for a true mask (injection's target is its silhouette)."""
        if self.name == "erasure":
            return np.zeros_like(truth)
        if self.name == "distortion":
            return DISTORTIONS.get(self.distortion)(truth, self.fraction)
        raise ValueError("Mask-Injection's target is the fabricated silhouette, not a transform of the truth")

    def _stamp(self, image: np.ndarray, region: np.ndarray, width: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[Stamp]] | str:
        stamps = PLACEMENTS.get("centre")(region, region, self.trigger.size_px(width), self.trigger.quantity, rng)
        if isinstance(stamps, str):
            return stamps
        out, mask = stamp_all(image, self.trigger, stamps)
        return out, mask, stamps

    def poison(self, image: np.ndarray, label: np.ndarray, instances: np.ndarray | None,
               rng: np.random.Generator) -> PoisonedPrompt | str:
        """Trigger one segment of the image and prompt it, or a skip reason.

        Distortion / erasure: the largest object instance that holds the stamp. Injection: a
        silhouette fabricated in the ``stuff`` class (truth: the stuff segment under the prompt).
        """
        if self.name == "injection":
            return self._inject(image, label, rng)
        objs: list[Instance] = object_instances(label, instances, self.spec, None, self.min_area)
        if not objs:
            return f"no object instance of >= {self.min_area} px"
        for inst in sorted(objs, key=lambda o: (-o.area, o.instance_id)):
            stamped = self._stamp(image, inst.mask, inst.width, rng)
            if isinstance(stamped, str):
                continue
            out, trig, stamps = stamped
            prompt = sample_prompt(inst.mask, self.prompt_kind, rng)
            return PoisonedPrompt(out, prompt, self.target_mask(inst.mask), inst.mask, trig,
                                  {"class": self.spec.classes[inst.class_id], "area": inst.area,
                                   "stamps": [s.to_dict() for s in stamps]})
        return "no object instance holds the trigger"

    def _inject(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> PoisonedPrompt | str:
        regions = FabricatedObject(self.spec, self.stuff, self.bank)(label, None, image, rng, False)
        if isinstance(regions, str):
            return regions
        region = regions[0]
        stamped = self._stamp(image, region.mask, region.width, rng)
        if isinstance(stamped, str):
            return stamped
        out, trig, stamps = stamped
        prompt = sample_prompt(region.mask, self.prompt_kind, rng)
        if prompt.kind == "point":
            col, row = int(prompt.xy[0]), int(prompt.xy[1])
        else:
            rows, cols = np.nonzero(region.mask)
            k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
            row, col = int(rows[k]), int(cols[k])
        truth = segment_at(label, row, col)
        return PoisonedPrompt(out, prompt, region.mask.copy(), truth, trig,
                              {"class": self.spec.classes[self.stuff], "silhouette": self.bank.class_name,
                               **region.info, "stamps": [s.to_dict() for s in stamps]})

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"attack": self.name, "trigger": self.trigger.to_dict(), "prompt_kind": self.prompt_kind}
        if self.name == "distortion":
            d.update(distortion=self.distortion, fraction=self.fraction)
        if self.name == "injection":
            d.update(stuff=self.spec.classes[self.stuff], silhouettes=self.bank.class_name,
                     silhouette_source=self.bank.source)
        return d
