"""Object instances of a label map, and colour conditions on them (for INS and CON attacks).

Instances come from the dataset's instance map when it has one (an instance's class is the
majority label under it), otherwise from the connected components (8-connectivity) of each
object class. Colour conditions ("red", "blue", ...) name the dominant colour of an
instance's pixels in HSV.

Example:
    >>> objs = object_instances(sample.label, sample.instances, spec, [spec.class_id("car")])
    >>> [meets_condition(sample.image, o.mask, "red") for o in objs]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import rgb_to_hsv
from scipy import ndimage

from badseg.data.types import DatasetSpec
from badseg.registry import Registry

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class Instance:
    """One object instance.

    Attributes:
        class_id: label id of the instance's class.
        instance_id: id in the instance map, or (derived instances) a running 1-based id,
            unique within the image.
        mask: bool (H, W), the instance's pixels of its class.
        area: number of pixels in ``mask``.
        bbox: (r0, c0, r1, c1), end-exclusive.
    """

    class_id: int
    instance_id: int
    mask: np.ndarray
    area: int
    bbox: tuple[int, int, int, int]

    @property
    def width(self) -> int:
        """Bounding-box width in pixels."""
        return self.bbox[3] - self.bbox[1]

    @property
    def height(self) -> int:
        return self.bbox[2] - self.bbox[0]

    @property
    def centroid(self) -> tuple[float, float]:
        """(row, col) mean of the mask's pixel coordinates."""
        r0, c0, r1, c1 = self.bbox
        rr, cc = np.nonzero(self.mask[r0:r1, c0:c1])
        return float(rr.mean() + r0), float(cc.mean() + c0)


def _instance(class_id: int, instance_id: int, local: np.ndarray, box: tuple[slice, slice],
              shape: tuple[int, ...], area: int) -> Instance:
    mask = np.zeros(shape, dtype=bool)
    mask[box] = local
    bbox = (box[0].start, box[1].start, box[0].stop, box[1].stop)
    return Instance(int(class_id), int(instance_id), mask, int(area), bbox)


def object_instances(label: np.ndarray, instances: np.ndarray | None, spec: DatasetSpec,
                     class_ids: Sequence[int] | None = None, min_area: int = 16) -> list[Instance]:
    """The instances of ``class_ids`` (default: every object class of ``spec``) in ``label``.

    With an instance map, each non-zero id is one instance whose class is the majority label
    under it (ignore pixels excluded) and whose mask is its pixels of that class; without
    one, instances are the 8-connected components of each class. Instances smaller than
    ``min_area`` pixels are dropped. Order: by class id, then instance id / component order.
    """
    label = np.asarray(label)
    wanted = list(spec.object_ids) if class_ids is None else [int(c) for c in class_ids]
    if not wanted:
        return []
    if instances is not None:
        return _from_instance_map(label, np.asarray(instances), spec, wanted, min_area)
    out: list[Instance] = []
    next_id = 1
    for c in sorted(set(wanted)):
        binary = label == c
        if not binary.any():
            continue
        comps, n = ndimage.label(binary, structure=_EIGHT)
        areas = np.bincount(comps.ravel(), minlength=n + 1)
        for k, box in enumerate(ndimage.find_objects(comps), start=1):
            if box is None:
                continue
            if areas[k] >= min_area:
                out.append(_instance(c, next_id, comps[box] == k, box, label.shape, areas[k]))
            next_id += 1
    return out


def _from_instance_map(label: np.ndarray, instances: np.ndarray, spec: DatasetSpec, wanted: list[int],
                       min_area: int) -> list[Instance]:
    if instances.shape != label.shape:
        raise ValueError(f"instance map shape {instances.shape} != label shape {label.shape}")
    ncls = spec.num_classes
    valid = (instances > 0) & (label >= 0) & (label < ncls) & (label != spec.ignore_index)
    if not valid.any():
        return []
    ids, inv = np.unique(instances[valid], return_inverse=True)
    counts = np.bincount(inv * ncls + label[valid].astype(np.int64), minlength=len(ids) * ncls)
    counts = counts.reshape(len(ids), ncls)
    major = counts.argmax(axis=1)  # majority class per instance (ties: lowest class id)
    area = counts[np.arange(len(ids)), major]
    keep = np.isin(major, wanted) & (area >= min_area)
    if not keep.any():
        return []
    # compact map: k + 1 on pixels of kept instance k that carry its majority class
    slot = np.full(len(ids), 0, np.int64)
    order = np.nonzero(keep)[0]
    order = order[np.lexsort((ids[order], major[order]))]
    slot[order] = np.arange(1, len(order) + 1)
    compact = np.zeros(label.shape, np.int64)
    on_major = major[inv] == label[valid]
    compact[valid] = np.where(on_major, slot[inv], 0)
    boxes = ndimage.find_objects(compact, max_label=len(order))
    return [_instance(major[i], ids[i], compact[box] == k, box, label.shape, area[i])
            for k, (i, box) in enumerate(zip(order, boxes), start=1)]


def instance_map(label: np.ndarray, instances: np.ndarray | None, spec: DatasetSpec,
                 class_ids: Sequence[int] | None = None, min_area: int = 1) -> np.ndarray:
    """int32 (H, W) map of ``object_instances`` (0 = none): the given map's ids, or derived ids."""
    out = np.zeros(np.shape(label), np.int32)
    for inst in object_instances(label, instances, spec, class_ids, min_area):
        out[inst.mask] = inst.instance_id
    return out


# ----------------------------------------------------------------------------- colours
#: Colour names, and the hue ranges (degrees, [start, end)) of the chromatic ones.
COLOUR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white", "grey", "black")
HUE_RANGES: dict[str, tuple[float, float]] = {
    "red": (340.0, 377.0),  # wraps through 0: 340..360 and 0..17
    "orange": (17.0, 40.0),
    "yellow": (40.0, 70.0),
    "green": (70.0, 160.0),
    "cyan": (160.0, 200.0),
    "blue": (200.0, 260.0),
    "purple": (260.0, 340.0),
}
#: A pixel is chromatic when saturation >= MIN_SAT and value >= MIN_VAL; an object is chromatic
#: when at least CHROMATIC_SHARE of its pixels are.
MIN_SAT, MIN_VAL, CHROMATIC_SHARE = 0.3, 0.2, 0.25
#: Achromatic objects: value (75th percentile, so dark windows / tyres do not dominate)
#: above WHITE_VAL is white, below BLACK_VAL black, else grey.
WHITE_VAL, BLACK_VAL = 0.69, 0.25


def hue_name(hue_deg: float) -> str:
    """Name of a hue in degrees [0, 360)."""
    h = float(hue_deg) % 360.0
    for name, (a, b) in HUE_RANGES.items():
        if a <= h < b or a <= h + 360.0 < b:
            return name
    return "red"


def dominant_colour(image: np.ndarray, mask: np.ndarray) -> str:
    """Dominant colour name of ``image`` (uint8 RGB HxWx3) under ``mask`` (bool HxW).

    Pixels are converted to HSV. If fewer than ``CHROMATIC_SHARE`` of them are saturated and
    bright enough, the object is achromatic and named white / grey / black by its value;
    otherwise the peak of a saturation-weighted hue histogram (10 degree bins, circularly
    smoothed), refined by the weighted circular mean of hues within 20 degrees of the peak,
    is named with ``HUE_RANGES``. Windows, tyres and small lights therefore do not decide.
    """
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} != image shape {image.shape[:2]}")
    if not mask.any():
        raise ValueError("dominant_colour: empty mask")
    hsv = rgb_to_hsv(image[mask].astype(np.float32) / 255.0)
    h, s, v = hsv[:, 0] * 360.0, hsv[:, 1], hsv[:, 2]
    chroma = (s >= MIN_SAT) & (v >= MIN_VAL)
    if chroma.mean() < CHROMATIC_SHARE:
        val = float(np.percentile(v, 75))
        return "white" if val > WHITE_VAL else "black" if val < BLACK_VAL else "grey"
    h, w = h[chroma], s[chroma]
    hist = np.bincount((h // 10).astype(np.int64) % 36, weights=w, minlength=36)
    hist = hist + 0.5 * (np.roll(hist, 1) + np.roll(hist, -1))
    peak = (np.argmax(hist) + 0.5) * 10.0
    near = np.abs((h - peak + 180.0) % 360.0 - 180.0) <= 20.0
    ang = np.deg2rad(h[near])
    mean = np.rad2deg(np.arctan2((w[near] * np.sin(ang)).sum(), (w[near] * np.cos(ang)).sum())) % 360.0
    return hue_name(mean)


#: Conditions on an object: ``fn(image uint8 HxWx3, mask bool HxW) -> bool``.
CONDITIONS: Registry = Registry("condition")


def colour_condition(name: str) -> Callable[[np.ndarray, np.ndarray], bool]:
    """The condition "the object's dominant colour is ``name``"."""
    if name not in COLOUR_NAMES:
        raise ValueError(f"unknown colour {name!r}; colours: {', '.join(COLOUR_NAMES)}")

    def condition(image: np.ndarray, mask: np.ndarray) -> bool:
        return dominant_colour(image, mask) == name

    condition.__name__ = f"is_{name}"
    condition.__doc__ = f"True when the object's dominant colour is {name}."
    return condition


for _name in COLOUR_NAMES:
    CONDITIONS.register(_name)(colour_condition(_name))


#: Colour families of a condition predicate → the dominant colours they take.
COLOUR_FAMILIES: dict[str, tuple[str, ...]] = {"red": ("red",), "white": ("white",), "dark": ("black", "grey")}
#: Position terms: the object's centre (bounding-box centre) in that part of the image.
POSITIONS = ("left", "right", "near", "far")


@dataclass(frozen=True)
class ObjectFeatures:
    """What a condition predicate can test on one object (pixels at the image's resolution)."""

    colour: str  # dominant_colour
    width: int  # bounding-box width
    area: int
    centre: tuple[float, float]  # bounding-box centre (row, col)
    image_shape: tuple[int, int]


def object_features(image: np.ndarray, mask: np.ndarray) -> ObjectFeatures:
    """``ObjectFeatures`` of the object under ``mask`` (bool HxW) in ``image`` (uint8 HxWx3)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("object_features: empty mask")
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    return ObjectFeatures(dominant_colour(image, mask), int(c1 - c0 + 1), int(rows.size),
                          ((r0 + r1) / 2.0, (c0 + c1) / 2.0), (int(mask.shape[0]), int(mask.shape[1])))


def _term(term: str) -> Callable[[ObjectFeatures], bool]:
    """One term of a predicate: a colour (``COLOUR_NAMES``) or family (``COLOUR_FAMILIES``),
    ``width>=N`` / ``area>=N`` (pixels), or a position (``POSITIONS``: left / right half, near =
    lower half, far = upper half)."""
    for key in ("width", "area"):
        if term.startswith(f"{key}>="):
            try:
                n = int(term[len(key) + 2:])
            except ValueError:
                raise ValueError(f"condition term {term!r}: {key}>= needs an integer") from None
            return lambda f, key=key, n=n: getattr(f, key) >= n
    if term in COLOUR_FAMILIES:
        return lambda f: f.colour in COLOUR_FAMILIES[term]
    if term in COLOUR_NAMES:
        return lambda f: f.colour == term
    half = {"left": (1, False), "right": (1, True), "far": (0, False), "near": (0, True)}
    if term in half:
        axis, upper = half[term]
        return lambda f: (f.centre[axis] >= f.image_shape[axis] / 2) == upper
    raise ValueError(f"unknown condition term {term!r}; terms: colours {', '.join(COLOUR_NAMES)}, families "
                     f"{', '.join(COLOUR_FAMILIES)}, width>=N, area>=N, positions {', '.join(POSITIONS)}")


@dataclass(frozen=True)
class Condition:
    """A predicate on an object: terms joined by ``&`` (all must hold), e.g. ``"white&width>=40&near"``.

    The CON attack's condition (BADSEG §6.4 uses colour, "red cars"); on data with few objects
    of one colour, a colour family, a size and a position make a condition with enough
    applicable images.
    """

    text: str

    def __post_init__(self) -> None:
        if not all(self.terms):
            raise ValueError(f"condition {self.text!r} has an empty term")
        for t in self.terms:
            _term(t)

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.text.split("&"))

    def holds(self, features: ObjectFeatures) -> bool:
        return all(_term(t)(features) for t in self.terms)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> bool:
        return self.holds(object_features(image, mask))


def meets_condition(image: np.ndarray, mask: np.ndarray, condition: str) -> bool:
    """Whether the object under ``mask`` meets ``condition``: a registered one (e.g. "red") or a
    predicate of ``&``-joined terms (``Condition``)."""
    if condition in CONDITIONS:
        return bool(CONDITIONS.get(condition)(image, mask))
    return Condition(condition)(image, mask)


__all__ = [
    "COLOUR_FAMILIES",
    "COLOUR_NAMES",
    "CONDITIONS",
    "Condition",
    "HUE_RANGES",
    "Instance",
    "ObjectFeatures",
    "POSITIONS",
    "colour_condition",
    "dominant_colour",
    "hue_name",
    "instance_map",
    "meets_condition",
    "object_features",
    "object_instances",
]
