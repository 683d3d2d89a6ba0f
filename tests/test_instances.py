"""Instances from instance maps and connected components; colour conditions."""

from __future__ import annotations

import numpy as np
import pytest

from badseg.data.instances import (
    COLOUR_NAMES,
    CONDITIONS,
    Condition,
    dominant_colour,
    instance_map,
    meets_condition,
    object_instances,
)
from badseg.attacks import build_attack
from badseg.data.types import DatasetSpec

SPEC = DatasetSpec("toy", ("road", "car", "person"), ("stuff", "object", "object"),
                   np.array([[128, 64, 128], [0, 0, 142], [220, 20, 60]]))


def blobs() -> np.ndarray:
    label = np.zeros((20, 30), np.int64)
    label[2:6, 2:8] = 1  # car blob A: 24 px
    label[10:15, 20:28] = 1  # car blob B: 40 px
    label[6, 8] = 1  # diagonal neighbour of A: joins A under 8-connectivity
    label[17:19, 2:4] = 1  # tiny car blob: 4 px
    label[12:18, 5:9] = 2  # person: 24 px
    label[0, 29] = 255  # ignore
    return label


def test_connected_components_split_blobs_and_filter_small():
    objs = object_instances(blobs(), None, SPEC, min_area=16)
    assert [(o.class_id, o.area) for o in objs] == [(1, 25), (1, 40), (2, 24)]
    a = objs[0]
    assert a.bbox == (2, 2, 7, 9) and a.width == 7 and a.mask[6, 8] and a.mask.sum() == a.area
    assert len({o.instance_id for o in objs}) == 3
    assert len(object_instances(blobs(), None, SPEC, min_area=1)) == 4
    cars = object_instances(blobs(), None, SPEC, class_ids=[1], min_area=1)
    assert [o.area for o in cars] == [25, 40, 4] and all(o.class_id == 1 for o in cars)
    assert object_instances(np.zeros((5, 5), np.int64), None, SPEC) == []


def test_instance_map_majority_class_and_order():
    label = blobs()
    ins = np.zeros(label.shape, np.int32)
    ins[2:7, 2:9] = 7  # covers blob A (car) plus 10 road pixels: majority car (25 vs 10)
    ins[10:15, 20:28] = 3  # blob B
    ins[12:18, 5:9] = 9  # person
    ins[0:2, 10:20] = 4  # road only: not an object
    ins[17:19, 2:4] = 5  # tiny car
    objs = object_instances(label, ins, SPEC, min_area=16)
    assert [(o.class_id, o.instance_id, o.area) for o in objs] == [(1, 3, 40), (1, 7, 25), (2, 9, 24)]
    a = objs[1]
    assert np.array_equal(a.mask, (ins == 7) & (label == 1))  # only the majority-class pixels
    assert a.bbox == (2, 2, 7, 9)
    # majority decided without ignore pixels: an instance mostly on ignore pixels keeps its class
    label2 = label.copy()
    label2[10:15, 20:27] = 255
    objs2 = object_instances(label2, ins, SPEC, class_ids=[1], min_area=1)
    assert [(o.instance_id, o.area) for o in objs2] == [(3, 5), (5, 4), (7, 25)]
    m = instance_map(label, ins, SPEC)
    assert set(np.unique(m)) == {0, 3, 5, 7, 9}


def test_instance_from_synthetic_map_equals_recorded(synthetic):
    s = synthetic[0]
    objs = object_instances(s.label, s.instances, synthetic.spec, min_area=1)
    recs = {d["id"]: d for d in s.meta["instances"]}
    assert {o.instance_id for o in objs} == set(recs)
    for o in objs:
        assert o.area == recs[o.instance_id]["area"] and list(o.bbox) == recs[o.instance_id]["bbox"]


def patch(rgb, n=20) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((n, n, 3), np.uint8)
    img[:] = rgb
    mask = np.zeros((n, n), bool)
    mask[2:-2, 2:-2] = True
    return img, mask


@pytest.mark.parametrize("rgb,name", [
    ((200, 30, 30), "red"), ((230, 120, 20), "orange"), ((230, 210, 30), "yellow"), ((40, 160, 50), "green"),
    ((30, 180, 190), "cyan"), ((30, 60, 200), "blue"), ((140, 40, 190), "purple"), ((235, 235, 235), "white"),
    ((128, 128, 130), "grey"), ((20, 20, 22), "black"), ((180, 20, 60), "red"),
])
def test_dominant_colour_of_flat_patches(rgb, name):
    img, mask = patch(rgb)
    assert dominant_colour(img, mask) == name
    assert meets_condition(img, mask, name)
    assert not meets_condition(img, mask, "green" if name != "green" else "red")


def test_dominant_colour_ignores_dark_windows_and_small_lights():
    img, mask = patch((190, 25, 25), 40)
    img[5:15, 5:35] = (25, 28, 35)  # dark window, 30 % of the object
    assert dominant_colour(img, mask) == "red"
    img, mask = patch((235, 235, 235), 40)
    img[5:15, 5:35] = (25, 28, 35)
    img[30:33, 4:8] = (200, 20, 20)  # small red light on a white car
    assert dominant_colour(img, mask) == "white"
    img[:, :] = (10, 10, 10)
    img[mask] = (40, 40, 220)  # only the masked pixels count
    assert dominant_colour(img, mask) == "blue"
    with pytest.raises(ValueError):
        dominant_colour(img, np.zeros((40, 40), bool))


def test_condition_registry():
    assert set(COLOUR_NAMES) <= set(CONDITIONS.names())
    img, mask = patch((200, 30, 30))
    with pytest.raises(ValueError, match="unknown condition term 'striped'; terms: colours red"):
        meets_condition(img, mask, "striped")


def _scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A 60×100 grey image with a large white car lower left, a small dark car upper right and
    a red car lower right."""
    image = np.full((60, 100, 3), 120, np.uint8)
    masks = {name: np.zeros((60, 100), bool) for name in ("white", "dark", "red")}
    masks["white"][35:55, 5:50] = True
    masks["dark"][5:15, 70:82] = True
    masks["red"][40:50, 60:90] = True
    image[masks["white"]] = (235, 235, 230)
    image[masks["dark"]] = (25, 25, 30)
    image[masks["red"]] = (200, 20, 25)
    return image, masks


@pytest.mark.parametrize("condition, holds", [
    ("white", {"white"}), ("dark", {"dark"}), ("red", {"red"}),
    ("width>=40", {"white"}), ("width>=12", {"white", "dark", "red"}), ("area>=300", {"white", "red"}),
    ("near", {"white", "red"}), ("far", {"dark"}), ("left", {"white"}), ("right", {"dark", "red"}),
    ("white&width>=40&near&left", {"white"}), ("dark&near", set()), ("red & width>=20", {"red"}),
])
def test_condition_predicate_combines_colour_family_size_and_position(condition, holds):
    image, masks = _scene()
    got = {name for name, m in masks.items() if meets_condition(image, m, condition)}
    assert got == holds


def test_condition_predicate_rejects_unknown_terms():
    for bad in ("plaid", "width>=wide", "white&", ""):
        with pytest.raises(ValueError, match="condition"):
            Condition(bad)
    with pytest.raises(ValueError, match="width>=N"):
        build_attack("con", SPEC, "car", "road", condition="white&heavy")
