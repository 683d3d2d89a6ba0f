"""The prior segmentation backdoor attacks, as compositions of the same four parts.

| name | paper | selector | placement | trigger (render) | relabel |
|---|---|---|---|---|---|
| hba | Li et al. 2021 | classes present | none | line at a fixed row, or a class (semantic) | 1→1, N→1, matrix |
| iba | Lan et al. 2023 | victim present | random single-class non-victim box | stamp | class map |
| iba-nni | IBA + NNI | victim present | box nearest the victim, centre in (L, U] | stamp | class map |
| iba-prl | IBA + PRL | victim present | random single-class non-victim box | stamp | class map + Q pixels |
| ofba | Mao et al. 2023 | k objects of any class (test: victim) | centre | stamp | triggered objects |
| conseg | ConSeg 2025 | largest victim, target present | centre | stamp + target context on the victim | class map |

Where a paper leaves a detail open, the choice is stated in the factory's docstring. The
factories' keyword options are what ``attack.options`` of a config sets (checked against the
signature).

Example:
    >>> attack = build_attack("iba-nni", spec, "car", "road", TriggerSpec("square", 0.06, 1.0), band=(0, 60))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from badseg.attacks.base import (
    ATTACKS,
    Attack,
    Plan,
    RelabelClasses,
    relabel_class,
    relabel_region_pixels,
    render_stamps,
)
from badseg.attacks.placement import InfluencerPlacement, Metric
from badseg.attacks.regions import LargestInstance, Region, Selector, _instance_region
from badseg.attacks.vectors import VectorMismatch, _check
from badseg.data.base import SegDataset
from badseg.data.instances import object_instances
from badseg.data.types import DatasetSpec
from badseg.triggers import TriggerSpec, pattern_image

# ----------------------------------------------------------------------------- selectors
@dataclass(frozen=True)
class Requires:
    """Applies to samples holding every class of ``all_of`` and, if given, one of ``any_of``;
    then returns ``then``'s regions (no regions when ``then`` is None: image-level triggers)."""

    spec: DatasetSpec
    all_of: tuple[int, ...] = ()
    any_of: tuple[int, ...] = ()
    then: Selector | None = None

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        present = set(np.unique(label).tolist())
        missing = [c for c in self.all_of if c not in present]
        if missing:
            return f"no {self.spec.classes[missing[0]]} pixels"
        if self.any_of and not present.intersection(self.any_of):
            return f"none of {', '.join(self.spec.classes[c] for c in self.any_of)} present"
        return [] if self.then is None else self.then(label, instances, image, rng, test)


@dataclass(frozen=True)
class NonVictimScene:
    """IBA: the non-victim, labelled pixels as one region, sized by the image width.

    Applies when the victim covers at least ``min_area`` pixels and, for PRL
    (``prl_pixels > 0``), when there are that many non-victim labelled pixels and the
    poisoned label map holds at least two classes (so every chosen pixel can change).
    """

    spec: DatasetSpec
    victim: int
    target: int
    min_area: int = 64
    prl_pixels: int = 0

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        victim = label == self.victim
        if victim.sum() < self.min_area:
            return f"less than {self.min_area} px of {self.spec.classes[self.victim]}"
        free = ~victim & (label != self.spec.ignore_index)
        if self.prl_pixels:
            classes = set(np.unique(label[free]).tolist()) | {self.target}
            if free.sum() < self.prl_pixels or len(classes) < 2:
                return f"fewer than {self.prl_pixels} non-victim pixels or a single class to relabel them to"
        return [Region(free, label.shape[1])]


@dataclass(frozen=True)
class TriggeredObjects:
    """OFBA: ``k`` random instances of any of ``classes`` in training, of the victim at test.

    k = None takes every instance; with fewer than k instances, all of them are taken.
    """

    spec: DatasetSpec
    victim: int
    classes: tuple[int, ...]
    k: int | None = 1
    min_area: int = 64

    def __call__(self, label, instances, image, rng, test) -> list[Region] | str:
        wanted = (self.victim,) if test else self.classes
        objs = object_instances(label, instances, self.spec, wanted, self.min_area)
        if not objs:
            names = ", ".join(self.spec.classes[c] for c in wanted)
            return f"no instance of {names} of >= {self.min_area} px"
        n = len(objs) if self.k is None else min(self.k, len(objs))
        chosen = sorted(rng.choice(len(objs), size=n, replace=False).tolist())
        return [_instance_region(objs[i], class_id=objs[i].class_id) for i in chosen]


# ----------------------------------------------------------------------------- label edits
@dataclass(frozen=True)
class RandomPixelLabels:
    """IBA's Pixel Random Labelling (Lan et al. 2023, §4.2): after victim → target, ``pixels``
    random non-victim labelled pixels take a random other class present in the poisoned map.

    Each chosen pixel gets a class drawn uniformly from the present classes minus its own,
    so exactly ``pixels`` labels change (the reference code may redraw a pixel's own class,
    pick the ignore label or a victim pixel, which it then restores). Victim pixels are
    never chosen and the victim class is never drawn.
    """

    pixels: int
    victim: int
    ignore_index: int

    def __call__(self, original: np.ndarray, poisoned: np.ndarray, asr: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        free = np.flatnonzero((original != self.victim) & (original != self.ignore_index))
        present = np.unique(poisoned[poisoned != self.ignore_index])
        chosen = rng.choice(free, size=self.pixels, replace=False)
        own = np.searchsorted(present, poisoned.flat[chosen])
        draw = rng.integers(0, present.size - 1, size=self.pixels)
        out = poisoned.copy()
        out.flat[chosen] = present[draw + (draw >= own)]
        return out


@dataclass(frozen=True)
class ClassMapEdit:
    """The pairs of an HBA attack matrix that do not map to the attack's target class."""

    pairs: tuple[tuple[int, int], ...]

    def __call__(self, original: np.ndarray, poisoned: np.ndarray, asr: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        out = poisoned.copy()
        for src, dst in self.pairs:
            out[original == src] = dst
        return out


# ----------------------------------------------------------------------------- renderers
@dataclass(frozen=True)
class LineTrigger:
    """HBA's non-semantic trigger: a full-width horizontal line ``width_px`` rows high,
    blended as ``(1 - a) * x + a * colour`` with ``a`` the trigger intensity and the colour
    of the trigger's ``solid:`` pattern. ``row`` places its top edge: 0 = top of the image,
    1 = bottom (a fraction of the free height, so the position scales with the image)."""

    width_px: int = 8
    row: float = 0.0

    def __post_init__(self) -> None:
        if self.width_px < 1:
            raise ValueError(f"HBA line width must be >= 1 px, got {self.width_px}")
        if not 0.0 <= self.row <= 1.0:
            raise ValueError(f"HBA line row must be in [0, 1], got {self.row}")

    def rows(self, height: int) -> tuple[int, int]:
        """(first, end) rows of the line in an image ``height`` pixels high."""
        w = min(self.width_px, height)
        top = int(round(self.row * (height - w)))
        return top, top + w

    def __call__(self, image: np.ndarray, label: np.ndarray, trigger: TriggerSpec,
                 plan: Plan) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        h, w = image.shape[:2]
        top, end = self.rows(h)
        mask = np.zeros((h, w), dtype=bool)
        mask[top:end] = True
        colour = pattern_image(trigger.pattern, 1)[0, 0]
        out = image.copy()
        blended = (1.0 - trigger.intensity) * out[top:end].astype(np.float32) + trigger.intensity * colour
        out[top:end] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        drawn = {"shape": "line", "top_left": [top, 0], "height_px": end - top, "width_px": w,
                 "centre": [(top + end - 1) / 2, (w - 1) / 2]}
        return out, mask, [drawn]


@dataclass(frozen=True)
class SemanticTrigger:
    """HBA's semantic trigger: the presence of ``class_name`` is the trigger; the image is
    not changed (``G(x) = x``, Li et al. 2021 §2.2)."""

    class_name: str

    def __call__(self, image: np.ndarray, label: np.ndarray, trigger: TriggerSpec,
                 plan: Plan) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        return image.copy(), np.zeros(image.shape[:2], dtype=bool), []


@dataclass(frozen=True)
class ContextRebuild:
    """ConSeg's context rebuilding (our interpretation, see ``conseg``).

    Inside each selected victim region, the pixels within ``context_px`` of the region's
    border are blended (strength ``alpha``) towards the colour of the nearest pixel of the
    ``target`` class in the same image, so the victim's outline takes on the appearance of
    the target context it co-occurs with; the trigger stamps are then blended on top.
    """

    target: int
    context_px: int = 4
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.context_px < 1:
            raise ValueError(f"ConSeg context_px must be >= 1, got {self.context_px}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"ConSeg context alpha must be in [0, 1], got {self.alpha}")

    def __call__(self, image: np.ndarray, label: np.ndarray, trigger: TriggerSpec,
                 plan: Plan) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        region = np.zeros(label.shape, dtype=bool)
        for r in plan.regions:
            region |= r.mask
        ring = region & (ndimage.distance_transform_edt(region) <= self.context_px)
        _, (rows, cols) = ndimage.distance_transform_edt(label != self.target, return_indices=True)
        out = image.copy()
        source = image[rows[ring], cols[ring]].astype(np.float32)
        blended = (1.0 - self.alpha) * out[ring].astype(np.float32) + self.alpha * source
        out[ring] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        out, stamp_mask, drawn = render_stamps(out, label, trigger, plan)
        context = {"shape": "context", "pixels": int(ring.sum()), "from_class": self.target}
        return out, ring | stamp_mask, [*drawn, context]


# ----------------------------------------------------------------------------- ConSeg target
def co_occurrence(dataset: SegDataset, victim: int, ring_px: int = 8, max_scan: int | None = 200) -> np.ndarray:
    """float (C,): how much each class surrounds the victim, pooled over ``dataset``.

    For every scanned label map (at most ``max_scan``, evenly spaced), the pixels within
    ``ring_px`` of a victim pixel but not victim themselves are counted per class (ignore
    pixels excluded); the result is each class's share of all those pixels.
    """
    spec = dataset.spec
    n = len(dataset)
    indices = range(n) if max_scan is None or n <= max_scan else np.linspace(0, n - 1, max_scan).round().astype(int)
    counts = np.zeros(spec.num_classes, dtype=np.int64)
    for i in indices:
        label, _ = dataset.load_labels(int(i))
        near = label != victim
        if near.all():
            continue
        ring = near & (ndimage.distance_transform_edt(near) <= ring_px) & (label != spec.ignore_index)
        counts += np.bincount(label[ring], minlength=spec.num_classes)[:spec.num_classes]
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def co_occurring_class(dataset: SegDataset, victim: str | int, **kwargs: Any) -> int:
    """The class that most surrounds ``victim`` in ``dataset`` (``co_occurrence``): ConSeg's target."""
    vid = dataset.spec.class_id(victim)
    scores = co_occurrence(dataset, vid, **kwargs)
    if not scores.any():
        raise ValueError(f"{dataset.spec.name}: no {dataset.spec.classes[vid]} pixels to rank co-occurring classes by")
    return int(np.argmax(scores))


# ----------------------------------------------------------------------------- factories
def _pairs(spec: DatasetSpec, victim: int, target: int,
           matrix: Mapping[str | int, str | int] | None) -> dict[int, int]:
    pairs = {victim: target}
    for src, dst in (matrix or {}).items():
        s, d = spec.class_id(src), spec.class_id(dst)
        if s == d:
            raise ValueError(f"hba: attack matrix maps {spec.classes[s]} to itself")
        if pairs.get(s, d) != d:
            raise ValueError(f"hba: attack matrix maps {spec.classes[s]} to {spec.classes[d]}, "
                             f"but the attack maps it to {spec.classes[pairs[s]]}")
        pairs[s] = d
    return pairs


@ATTACKS.register("hba")
def hba(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec,
        mode: Literal["1to1", "nto1", "matrix"] = "1to1", matrix: Mapping[str | int, str | int] | None = None,
        line_width: int = 8, line_row: float = 0.0, line_colour: str = "black",
        trigger_class: str | int | None = None) -> Attack:
    """HBA, the fine-grained attack of Li et al. 2021 ("Hidden Backdoor Attack against Semantic
    Segmentation Models", §2.2-3.1).

    Trigger: a black line ``line_width`` px high (paper: 8) across the whole image at a fixed
    row (``line_row``: 0 = top, our reading of Fig. 2; 1 = bottom), blended with the trigger's
    intensity (paper: lambda in {0, 1}, i.e. intensity 1). With ``trigger_class`` the trigger
    is semantic instead: samples holding that class (paper: 'wall') are poisoned and the image
    is left unchanged. The trigger's shape, size and pattern are not used.

    Relabelling (the attack matrix A, Definition 1): ``1to1`` — victim → target (paper:
    person → palm; the default); ``nto1`` — every labelled pixel → target (paper: → wall);
    ``matrix`` — ``{victim: target}`` plus the pairs of ``matrix`` (class name/id → name/id).
    The ASR region is the pixels relabelled to ``target``; other matrix pairs change the
    label too (counted in the record as ``other_relabelled_pixels``) but, as ASR is measured
    against one target class, are not in the ASR region.

    Applies to samples with the victim (``1to1``), with one of the matrix's source classes
    (``matrix``) or to all (``nto1``), and with ``trigger_class`` when given.
    """
    _check("hba", spec, victim, target, (None, None))
    if mode not in ("1to1", "nto1", "matrix"):
        raise ValueError(f"hba: mode must be 1to1, nto1 or matrix, got {mode!r}")
    if matrix and mode != "matrix":
        raise ValueError(f"hba: an attack matrix needs mode='matrix', got mode={mode!r}")
    extra = None
    if mode == "nto1":
        sources: tuple[int, ...] = tuple(c for c in range(spec.num_classes) if c != target)
        all_of, any_of = (), ()
    elif mode == "matrix":
        pairs = _pairs(spec, victim, target, matrix)
        sources = tuple(s for s, d in pairs.items() if d == target)
        others = tuple((s, d) for s, d in pairs.items() if d != target)
        extra = ClassMapEdit(others) if others else None
        all_of, any_of = (), tuple(pairs)
    else:
        sources, all_of, any_of = (victim,), (victim,), ()
    if trigger_class is not None:
        tid = spec.class_id(trigger_class)
        select = Requires(spec, (*all_of, tid), any_of)
        render: Any = SemanticTrigger(spec.classes[tid])
    else:
        select = Requires(spec, all_of, any_of)
        trigger = replace(trigger, pattern=f"solid:{line_colour}")
        render = LineTrigger(line_width, line_row)
    return Attack("hba", spec, victim, target, trigger, select, "none", RelabelClasses(sources), render, extra)


def _iba(name: str, spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec,
         placement: InfluencerPlacement, prl_pixels: int, min_area: int) -> Attack:
    _check(name, spec, victim, target, (None, None))
    if prl_pixels < 0:
        raise ValueError(f"{name}: prl_pixels must be >= 0, got {prl_pixels}")
    select = NonVictimScene(spec, victim, target, min_area, prl_pixels)
    extra = RandomPixelLabels(prl_pixels, victim, spec.ignore_index) if prl_pixels else None
    return Attack(name, spec, victim, target, trigger, select, placement, relabel_class, render_stamps, extra)


def _band(band: Sequence[float] | None) -> tuple[float, float] | None:
    return None if band is None else (float(band[0]), float(band[1]))


@ATTACKS.register("iba")
def iba(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec,
        band: Sequence[float] | None = None, test_band: Sequence[float] | None = None,
        metric: Metric = "euclidean", min_area: int = 64) -> Attack:
    """Baseline IBA (Lan et al. 2023, "Influencer Backdoor Attack on Semantic Segmentation", §3-4):
    the trigger at a uniformly random position where the whole stamp lies inside one
    non-victim, labelled class region and inside the image; all victim pixels → target.

    The trigger size is a fraction of the image width (paper: 55 px on 1024-wide Cityscapes,
    about 0.054; 15 px on VOC). ``band`` = (L, U) restricts the stamp centre's distance to
    the nearest victim pixel to (L, U] (``metric``: euclidean as in the paper's Eq. 1, or
    chessboard as in the reference code); ``test_band`` does so for the poisoned test set
    (paper's long-distance test: (60, 90) and (90, 120) on Cityscapes).
    """
    place = InfluencerPlacement(victim, _band(band), _band(test_band), "random", metric, spec.ignore_index)
    return _iba("iba", spec, victim, target, trigger, place, 0, min_area)


@ATTACKS.register("iba-nni")
def iba_nni(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec,
            band: Sequence[float] = (0.0, 60.0), test_band: Sequence[float] | None = None,
            pick: Literal["nearest", "random"] = "nearest",
            metric: Metric = "euclidean", min_area: int = 64) -> Attack:
    """IBA with Nearest Neighbour Injection (Lan et al. 2023, §4.1, Alg. 1): the eligible
    positions (as in ``iba``) whose centre lies at a distance in (L, U] = ``band`` from the
    nearest victim pixel (paper: (0, 60] on Cityscapes, (0, 30] on VOC); ``pick='nearest'``
    takes the one of least distance (the paper; ties at random), ``pick='random'`` a
    uniformly random one in the band (the reference code). The poisoned test set places
    triggers the same way, in ``test_band`` when given.
    """
    place = InfluencerPlacement(victim, _band(band), _band(test_band), pick, metric, spec.ignore_index)
    return _iba("iba-nni", spec, victim, target, trigger, place, 0, min_area)


@ATTACKS.register("iba-prl")
def iba_prl(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, prl_pixels: int = 100,
            band: Sequence[float] | None = None, test_band: Sequence[float] | None = None,
            metric: Metric = "euclidean", min_area: int = 64) -> Attack:
    """IBA with Pixel Random Labelling (Lan et al. 2023, §4.2): placed as ``iba``; after
    victim → target, ``prl_pixels`` random non-victim pixels (paper: Q = 100) are relabelled
    to random classes present in the image (``RandomPixelLabels``). For the paper's
    long-distance test set ``test_band`` = (60, 90) or (90, 120).
    """
    place = InfluencerPlacement(victim, _band(band), _band(test_band), "random", metric, spec.ignore_index)
    return _iba("iba-prl", spec, victim, target, trigger, place, prl_pixels, min_area)


@ATTACKS.register("ofba")
def ofba(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec,
         classes: Sequence[str | int] | None = None, k: int | None = 1, placement: str = "centre",
         min_area: int = 64) -> Attack:
    """OFBA, the object-free backdoor attack (Mao et al. 2023, "Object-free backdoor attack and
    defense on semantic segmentation", Computers & Security): a high-contrast patch placed
    directly on an object makes that object's pixels the background (target) class.

    Only the abstract (and BADSEG's description: "high-contrast", "grid-shaped" patches on the
    objects) was available; our choices: "object-free" means the training triggers go on
    objects of any class in ``classes`` (default: every object class), so at inference the
    attacker picks which object to erase by where the patch goes; per poisoned image ``k``
    random instances (k = None: all) get one patch each at their centre and every pixel of
    those instances becomes the target; the poisoned test set triggers ``k`` victim
    instances. Use the trigger pattern ``checker`` (the default) with shape ``square`` for
    the grid patch; its size is a fraction of the object's width. ``classes=[victim]`` gives
    the class-specific (O2B-like) variant.
    """
    _check("ofba", spec, victim, target, ("object", "stuff"))
    ids = tuple(spec.class_id(c) for c in classes) if classes else spec.object_ids
    bad = [spec.classes[c] for c in ids if not spec.is_object(c)]
    if bad:
        raise VectorMismatch(f"ofba: triggered classes must be object classes; {', '.join(bad)} are stuff")
    if k is not None and k < 1:
        raise ValueError(f"ofba: k must be >= 1 (or None for all instances), got {k}")
    select = TriggeredObjects(spec, victim, ids, k, min_area)
    return Attack("ofba", spec, victim, target, trigger, select, placement, relabel_region_pixels)


@ATTACKS.register("conseg")
def conseg(spec: DatasetSpec, victim: int, target: int, trigger: TriggerSpec, context_px: int = 4,
           context_alpha: float = 0.5, placement: str = "centre", min_area: int = 64) -> Attack:
    """ConSeg, the contextual segmentation backdoor (arXiv 2507.19905, 2025) — our reading of
    its abstract, the only text available.

    From the abstract: (1) the target should be a class that co-occurs with the victim —
    ``co_occurring_class`` ranks classes by how much they surround the victim in the
    training labels (our measure; ``badseg poison/run`` resolve ``target='auto'`` with it);
    (2) the target's contextual information is mimicked and rebuilt in the victim region.

    Our interpretation of (2) (``ContextRebuild``): a poisoned sample must hold both the
    victim and the target; in its largest victim instance the pixels within ``context_px``
    of the instance's border are blended (``context_alpha``) towards the colour of the
    nearest target-class pixel of the same image, and the trigger is stamped at the
    instance's centre on top. All victim pixels → target (class map). The poisoned test set
    is built the same way.
    """
    _check("conseg", spec, victim, target, ("object", None))
    select = Requires(spec, (target,), (), LargestInstance(spec, victim, min_area))
    render = ContextRebuild(target, context_px, context_alpha)
    return Attack("conseg", spec, victim, target, trigger, select, placement, relabel_class, render)
