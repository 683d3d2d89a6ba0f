"""The built-in synthetic street scenes: determinism, shapes, labels, instances, colours."""

from __future__ import annotations

import numpy as np
import pytest

from badseg.data import get_spec, load_dataset
from badseg.data.instances import dominant_colour
from badseg.data.synthetic import CAR, SYNTHETIC_SPEC, SyntheticStreets


@pytest.fixture(scope="module")
def small():
    return SyntheticStreets(split="train", length=40, height=96, width=160, seed=3)


def test_registered_with_cityscapes_classes():
    spec = get_spec("synthetic")
    assert spec is SYNTHETIC_SPEC and spec.num_classes == 19
    assert spec.classes[0] == "road" and spec.classes[10] == "sky" and spec.classes[13] == "car"
    assert [spec.classes[i] for i in spec.object_ids] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    ds = load_dataset("synthetic", split="val", length=5)
    assert len(ds) == 5 and ds[0].image.shape == (128, 256, 3)


def test_deterministic_per_seed_split_index():
    a = SyntheticStreets(split="train", length=8, height=64, width=128)
    b = SyntheticStreets(split="train", length=8, height=64, width=128)
    s1, s2 = a[5], b[5]
    assert np.array_equal(s1.image, s2.image) and np.array_equal(s1.label, s2.label)
    assert np.array_equal(s1.instances, s2.instances) and s1.meta["instances"] == s2.meta["instances"]
    assert not np.array_equal(a[4].image, s1.image)  # another index
    v = SyntheticStreets(split="val", length=8, height=64, width=128)[5]
    t = SyntheticStreets(split="test", length=8, height=64, width=128)[5]
    assert not np.array_equal(v.image, s1.image) and not np.array_equal(t.image, v.image)
    o = SyntheticStreets(split="train", length=8, height=64, width=128, seed=1)[5]
    assert not np.array_equal(o.image, s1.image)
    assert s1.id == "train_000005" and v.id == "val_000005"


def test_shapes_dtypes_and_label_ids(small):
    seen = np.zeros(19, bool)
    for i in range(len(small)):
        s = small[i]
        assert s.image.shape == (96, 160, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (96, 160) and s.label.dtype == np.int64
        assert s.instances.shape == (96, 160) and s.instances.dtype == np.int32
        assert s.label.min() >= 0 and s.label.max() < 19
        seen[np.unique(s.label)] = True
        assert s.image.std() > 20  # not flat
    for name in ("road", "sidewalk", "building", "pole", "vegetation", "sky", "person", "car"):
        assert seen[SYNTHETIC_SPEC.class_id(name)], name
    assert seen.sum() >= 15


def test_layout_sky_on_top_road_at_bottom(small):
    sky_top = road_bottom = 0
    for i in range(len(small)):
        lab = small[i].label
        sky_top += (lab[:10] == 10).mean()
        road_bottom += (lab[-10:] == 0).mean()
    assert sky_top / len(small) > 0.3 and road_bottom / len(small) > 0.4


def test_instances_are_single_class_objects_and_match_meta(small):
    n_cars = 0
    for i in range(len(small)):
        s = small[i]
        ids = np.unique(s.instances)
        ids = ids[ids > 0]
        recs = {d["id"]: d for d in s.meta["instances"]}
        assert set(ids.tolist()) == set(recs)  # every visible instance is recorded, nothing else
        assert not SYNTHETIC_SPEC.is_object(int(np.bincount(s.label[s.instances == 0].ravel()).argmax()))
        for k in ids:
            classes = np.unique(s.label[s.instances == k])
            assert len(classes) == 1 and SYNTHETIC_SPEC.is_object(int(classes[0]))
            rec = recs[int(k)]
            assert rec["class_id"] == classes[0] and rec["class"] == SYNTHETIC_SPEC.classes[classes[0]]
            assert rec["area"] == int((s.instances == k).sum())
            r0, c0, r1, c1 = rec["bbox"]
            assert (s.instances[r0:r1, c0:c1] == k).sum() == rec["area"]
            if rec["class_id"] == CAR:
                n_cars += 1
                assert rec["colour"] in ("red", "white", "grey", "black", "blue", "green", "yellow", "orange")
            else:
                assert rec["colour"] is None
        # object pixels outside any instance do not exist
        obj = np.isin(s.label, SYNTHETIC_SPEC.object_ids)
        assert not (obj & (s.instances == 0)).any()
    assert n_cars >= 2 * len(small)


def test_cars_are_big_enough_and_scale_with_perspective():
    ds = SyntheticStreets(split="train", length=30)
    widths, bottoms = [], []
    for i in range(len(ds)):
        for d in ds[i].meta["instances"]:
            if d["class"] == "car" and d["area"] >= 64:
                r0, c0, r1, c1 = d["bbox"]
                widths.append(c1 - c0)
                bottoms.append(r1)
    widths, bottoms = np.array(widths), np.array(bottoms)
    assert len(widths) >= 60
    assert 15 <= np.median(widths) <= 60
    assert np.corrcoef(widths, bottoms)[0, 1] > 0.5  # nearer (lower) cars are wider


def test_red_cars_are_red_and_others_are_not():
    ds = SyntheticStreets(split="val", length=50)
    right = total = red = 0
    for i in range(len(ds)):
        s = ds[i]
        for d in s.meta["instances"]:
            if d["class"] != "car" or d["area"] < 64:
                continue
            got = dominant_colour(s.image, s.instances == d["id"])
            right += (got == "red") == (d["colour"] == "red")
            red += d["colour"] == "red"
            total += 1
    assert total >= 100 and 0.12 <= red / total <= 0.4
    assert right / total >= 0.95


def test_any_size_and_bad_arguments():
    s = SyntheticStreets(length=1, height=40, width=300)[0]
    assert s.image.shape == (40, 300, 3)
    s = SyntheticStreets(length=1, height=300, width=200)[0]
    assert s.label.shape == (300, 200)
    with pytest.raises(ValueError):
        SyntheticStreets(length=1, height=8, width=8)
    with pytest.raises(IndexError):
        SyntheticStreets(length=3)[3]
