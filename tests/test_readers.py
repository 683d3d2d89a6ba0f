"""Dataset readers on tiny fake trees of each real layout, plus the real CamVid when present.

Each builder writes a layout under ``tmp_path`` and returns a ``Tree`` that knows the arrays it
wrote (image as decoded by PIL, label after the dataset's id mapping, instance partition) and
how to break itself (drop a folder, empty the split, drop / resize / corrupt a label file).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badseg.data import DatasetError, get_spec, load_dataset
from badseg.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_SPEC, cityscapes_like_spec

H, W = 8, 12
IGNORE = 255


@dataclass
class Tree:
    name: str
    root: Path
    split: str
    images: list[np.ndarray] = field(default_factory=list)  # as PIL decodes the written file
    labels: list[np.ndarray] = field(default_factory=list)  # expected after id mapping
    instances: list[np.ndarray | None] = field(default_factory=list)  # expected partition (0 = none)
    label_paths: list[Path] = field(default_factory=list)
    required_dir: Path | None = None  # removing it must fail construction, naming it
    empty: Callable[[], Path] | None = None  # empties the split; returns the folder to be named
    write_raw_label: Callable[[int, np.ndarray], Path] | None = None  # raw ids → file to be named
    bad_raw_id: int | None = None  # a raw id outside the dataset's spec


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write_image(path: Path, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _write_png(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette:  # an "L" image with a palette attached becomes "P" with the same indices
        im.putpalette(list(range(256)) * 3)
    im.save(path)
    return path


def _random_label(seed: int, num_classes: int) -> np.ndarray:
    label = _rng(seed).integers(0, num_classes, (H, W))
    label[0, :3] = IGNORE
    return label.astype(np.int64)


def _halves_instances(label: np.ndarray, object_ids: tuple[int, ...]) -> np.ndarray:
    """One instance per (object class, left/right half), as distinct positive ids (0 = none)."""
    half = (np.arange(W) >= W // 2)[None, :].repeat(H, 0).astype(np.int64)
    objects = np.isin(label, object_ids)
    return np.where(objects, label * 1000 + 1000 + half, 0)


# --------------------------------------------------------------------------- builders


def build_camvid(tmp: Path) -> Tree:
    root = tmp / "camvid"
    t = Tree("camvid", root, "train", required_dir=root / "trainannot")
    for i in range(3):
        stem = f"f{i:03d}"
        t.images.append(_write_image(root / "train" / f"{stem}.png", i))
        label = _random_label(10 + i, 11)
        t.labels.append(label)
        t.instances.append(None)
        t.label_paths.append(_write_png(root / "trainannot" / f"{stem}.png",
                                        np.where(label == IGNORE, 11, label).astype(np.uint8)))

    def empty() -> Path:
        for p in (root / "train").glob("*.png"):
            p.unlink()
        return root / "train"

    t.empty = empty
    t.write_raw_label = lambda i, raw: _write_png(t.label_paths[i], raw.astype(np.uint8))
    t.bad_raw_id = 12
    return t


_LABEL_ID_OF_TRAIN_ID = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def build_cityscapes(tmp: Path) -> Tree:
    root = tmp / "cityscapes"
    t = Tree("cityscapes", root, "val", required_dir=root / "gtFine" / "val")
    objects = CITYSCAPES_SPEC.object_ids
    for i, city in enumerate(["aachen", "aachen", "bremen"]):
        stem = f"{city}_{i:06d}_000019"
        t.images.append(_write_image(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", i))
        label = _random_label(20 + i, 19)
        label[0, :4] = IGNORE
        raw = np.array(_LABEL_ID_OF_TRAIN_ID + [0] * 237)[label]
        raw[0, :4] = [0, 4, 29, 29]  # unlabeled, static, caravan: no train id
        t.labels.append(label)
        gt = root / "gtFine" / "val" / city
        t.label_paths.append(_write_png(gt / f"{stem}_gtFine_labelIds.png", raw.astype(np.uint8)))
        if i == 2:  # the instance file is optional
            t.instances.append(None)
            continue
        halves = _halves_instances(label, objects)
        raw_instances = np.where(halves > 0, raw * 1000 + halves % 1000, raw)
        raw_instances[0, 3] = 29000  # a caravan instance (no train id): not an instance
        _write_png(gt / f"{stem}_gtFine_instanceIds.png", raw_instances.astype(np.uint16))
        t.instances.append(halves)

    def empty() -> Path:
        shutil.rmtree(root / "leftImg8bit" / "val")
        (root / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
        return root / "leftImg8bit" / "val"

    t.empty = empty
    t.write_raw_label = lambda i, raw: _write_png(t.label_paths[i], raw.astype(np.uint8))
    t.bad_raw_id = 50
    return t


def build_bdd100k(tmp: Path) -> Tree:
    root = tmp / "bdd100k"
    t = Tree("bdd100k", root, "train", required_dir=root / "labels" / "sem_seg" / "masks" / "train")
    for i in range(3):
        stem = f"0a0a0b1a-{i:08d}"
        t.images.append(_write_image(root / "images" / "10k" / "train" / f"{stem}.jpg", 30 + i))
        label = _random_label(40 + i, 19)
        t.labels.append(label)
        t.label_paths.append(_write_png(root / "labels" / "sem_seg" / "masks" / "train" / f"{stem}.png",
                                        label.astype(np.uint8)))
        if i == 1:
            t.instances.append(None)
            continue
        ids = np.zeros((H, W), dtype=np.int64)
        ids[1:4, 1:5] = 300  # ids above 255 use the B channel
        ids[5:7, 2:9] = 301
        ids[4:8, 10:] = 7
        rgba = np.zeros((H, W, 4), dtype=np.uint8)
        rgba[..., 0] = np.where(ids > 0, 3, 0)  # category
        rgba[..., 1] = np.where(ids == 7, 4, 0)  # occluded attribute bit
        rgba[..., 2] = ids >> 8
        rgba[..., 3] = ids & 255
        _write_png(root / "labels" / "ins_seg" / "bitmasks" / "train" / f"{stem}.png", rgba)
        t.instances.append(ids)

    def empty() -> Path:
        for p in (root / "images" / "10k" / "train").glob("*.jpg"):
            p.unlink()
        return root / "images" / "10k" / "train"

    t.empty = empty
    t.write_raw_label = lambda i, raw: _write_png(t.label_paths[i], raw.astype(np.uint8))
    t.bad_raw_id = 19
    return t


def build_voc(tmp: Path) -> Tree:
    voc = tmp / "voc" / "VOCdevkit" / "VOC2012"
    t = Tree("voc", tmp / "voc", "val", required_dir=voc / "SegmentationClass")
    ids = ["2007_000032", "2007_000039", "2008_000123"]
    for i, sid in enumerate(ids):
        t.images.append(_write_image(voc / "JPEGImages" / f"{sid}.jpg", 50 + i))
        label = _random_label(60 + i, 21)
        t.labels.append(label)
        t.label_paths.append(_write_png(voc / "SegmentationClass" / f"{sid}.png", label.astype(np.uint8), True))
        objects = np.zeros((H, W), dtype=np.int64)
        objects[1:5, 1:6] = 1
        objects[3:8, 7:11] = 2
        objects[0, :] = 255  # border
        _write_png(voc / "SegmentationObject" / f"{sid}.png", objects.astype(np.uint8), True)
        t.instances.append(np.where(objects == 255, 0, objects))
    _write_image(voc / "JPEGImages" / "2009_999999.jpg", 99)  # not in the split: never read
    listing = voc / "ImageSets" / "Segmentation" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("\n".join(ids) + "\n")

    def empty() -> Path:
        listing.write_text("\n")
        return listing

    t.empty = empty
    t.write_raw_label = lambda i, raw: _write_png(t.label_paths[i], raw.astype(np.uint8), True)
    t.bad_raw_id = 21
    return t


def build_ade20k(tmp: Path) -> Tree:
    root = tmp / "ade"
    ade = root / "ADEChallengeData2016"
    t = Tree("ade20k", root, "val", required_dir=ade / "annotations" / "validation")
    for i in range(2):
        stem = f"ADE_val_{i + 1:08d}"
        t.images.append(_write_image(ade / "images" / "validation" / f"{stem}.jpg", 70 + i))
        raw = _rng(80 + i).integers(0, 151, (H, W))
        raw[0, :2] = [0, 150]
        t.labels.append(np.where(raw == 0, IGNORE, raw - 1))
        t.instances.append(None)
        t.label_paths.append(_write_png(ade / "annotations" / "validation" / f"{stem}.png", raw.astype(np.uint8)))
    _write_image(ade / "images" / "training" / "ADE_train_00000001.jpg", 0)  # other split: never read

    def empty() -> Path:
        for p in (ade / "images" / "validation").glob("*.jpg"):
            p.unlink()
        return ade / "images" / "validation"

    t.empty = empty
    t.write_raw_label = lambda i, raw: _write_png(t.label_paths[i], raw.astype(np.uint8))
    t.bad_raw_id = 151
    return t


def build_labpics(tmp: Path) -> Tree:
    root = tmp / "LabPicsChemistry"
    t = Tree("labpics", root, "train", required_dir=root / "Train")
    for i in range(2):
        sample = root / "Train" / f"Koen2All_Pic{i}"
        t.images.append(_write_image(sample / "Image.jpg", 90 + i))
        v1 = np.zeros((H, W), dtype=bool)
        v1[1:7, 1:5] = True
        v2 = np.zeros((H, W), dtype=bool)
        v2[2:8, 7 + i:11] = True
        m1 = np.zeros((H, W), dtype=bool)
        m1[4:7, 1:5] = True  # liquid filling the bottom of vessel 1
        _write_png(sample / "Vessels" / "1.png", (v1 * 255).astype(np.uint8))
        rgb = np.zeros((H, W, 3), dtype=np.uint8)
        rgb[v2, 2] = 7  # a mask set in one channel only still counts
        _write_png(sample / "Vessels" / "2.png", rgb)
        _write_png(sample / "MaterialsAndParts" / "1.png", (m1 * 255).astype(np.uint8))
        label = np.zeros((H, W), dtype=np.int64)
        label[v1 | v2] = 1
        label[m1] = 2
        inst = np.zeros((H, W), dtype=np.int64)
        inst[v1], inst[v2], inst[m1] = 1, 2, 3
        t.labels.append(label)
        t.instances.append(inst)
        t.label_paths.append(sample / "Vessels")

    def empty() -> Path:
        for d in (root / "Train").iterdir():
            shutil.rmtree(d)
        return root / "Train"

    def write_raw_label(i: int, raw: np.ndarray) -> Path:
        return _write_png(t.label_paths[i] / "1.png", ((raw > 0) * 255).astype(np.uint8))

    t.empty = empty
    t.write_raw_label = write_raw_label
    return t


BUILDERS = [build_camvid, build_cityscapes, build_bdd100k, build_voc, build_ade20k, build_labpics]
IDS = [b.__name__.removeprefix("build_") for b in BUILDERS]


def _load(t: Tree):
    return load_dataset(t.name, root=t.root, split=t.split)


def _assert_same_partition(got: np.ndarray, expected: np.ndarray) -> None:
    """Same instance regions (0 = none) up to renaming; ids are 1..n."""
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got > 0, expected > 0)
    pairs = {(int(a), int(b)) for a, b in zip(got[got > 0], expected[expected > 0], strict=True)}
    assert len(pairs) == len(np.unique(expected[expected > 0])) == len(np.unique(got[got > 0]))
    assert set(np.unique(got[got > 0]).tolist()) == set(range(1, len(pairs) + 1))


# --------------------------------------------------------------------------- good trees


@pytest.mark.parametrize("build", BUILDERS, ids=IDS)
def test_good_tree_reads_back_what_was_written(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    ds = _load(t)
    assert ds.spec is get_spec(t.name)
    assert len(ds) == len(t.labels)
    for i in range(len(ds)):
        s = ds[i]
        np.testing.assert_array_equal(s.image, t.images[i])
        assert s.label.dtype == np.int64
        np.testing.assert_array_equal(s.label, t.labels[i])
        if t.instances[i] is None:
            assert s.instances is None
        else:
            _assert_same_partition(s.instances, t.instances[i])
        label, instances = ds.load_labels(i)
        np.testing.assert_array_equal(label, s.label)
        assert (instances is None) == (s.instances is None)
        assert s.meta["id"] == ds.sample_id(i)
    assert len({ds.sample_id(i) for i in range(len(ds))}) == len(ds)


def test_exact_instance_ids_where_the_format_defines_them(tmp_path: Path) -> None:
    voc = _load(build_voc(tmp_path))
    assert voc[0].instances[0].tolist() == [0] * W  # 255 border → 0
    assert voc[0].instances[1, 1] == 1 and voc[0].instances[3, 8] == 2
    lab = _load(build_labpics(tmp_path))
    s = lab[0]
    assert s.instances[1, 1] == 1 and s.instances[5, 1] == 3 and s.instances[3, 9] == 2  # material over vessel
    assert s.label[5, 1] == lab.spec.class_id("material") and s.label[1, 1] == lab.spec.class_id("vessel")


def test_specs() -> None:
    names = {"camvid": 11, "cityscapes": 19, "bdd100k": 19, "voc": 21, "ade20k": 150, "labpics": 3}
    for name, n in names.items():
        spec = get_spec(name)
        assert spec.name == name and spec.num_classes == n and spec.palette.shape == (n, 3)
    assert CITYSCAPES_SPEC.class_id("pole") == 5 and CITYSCAPES_SPEC.class_id("car") == 13
    assert [CITYSCAPES_CLASSES[i] for i in CITYSCAPES_SPEC.object_ids] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert get_spec("bdd100k").classes == CITYSCAPES_CLASSES
    np.testing.assert_array_equal(get_spec("bdd100k").palette, CITYSCAPES_SPEC.palette)
    assert cityscapes_like_spec("synthetic_streets").name == "synthetic_streets"
    ade = get_spec("ade20k")
    assert len(ade.object_ids) == 100 and len(ade.stuff_ids) == 50
    assert ade.classes[:3] == ("wall", "building", "sky") and ade.classes[-1] == "flag"
    assert ade.is_object(ade.class_id("car")) and not ade.is_object(ade.class_id("road"))
    voc = get_spec("voc")
    assert voc.stuff_ids == (0,) and voc.palette[15].tolist() == [192, 128, 128]  # person
    assert get_spec("labpics").kinds == ("stuff", "object", "object")


def test_voc_root_forms(tmp_path: Path) -> None:
    t = build_voc(tmp_path)
    voc2012 = t.root / "VOCdevkit" / "VOC2012"
    assert len(load_dataset("voc", root=voc2012, split="val")) == 3
    shutil.move(voc2012, t.root / "VOC2012")
    assert len(load_dataset("voc", root=t.root, split="val")) == 3
    with pytest.raises(DatasetError, match="JPEGImages"):
        load_dataset("voc", root=tmp_path, split="val")


# --------------------------------------------------------------------------- bad trees


@pytest.mark.parametrize("build", BUILDERS, ids=IDS)
def test_missing_folder_names_it(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    shutil.rmtree(t.required_dir)
    with pytest.raises(DatasetError, match=str(t.required_dir)):
        _load(t)
    with pytest.raises(DatasetError, match=str(tmp_path / "nowhere")):
        load_dataset(t.name, root=tmp_path / "nowhere", split=t.split)


@pytest.mark.parametrize("build", BUILDERS, ids=IDS)
def test_empty_split_names_it(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    where = t.empty()
    with pytest.raises(DatasetError, match=str(where)):
        _load(t)


@pytest.mark.parametrize("build", BUILDERS, ids=IDS)
def test_missing_label_file_names_it(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    path = t.label_paths[1]
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    ds = _load(t)
    ds[0]  # the others still read
    for fn in (ds.__getitem__, ds.load_labels):
        with pytest.raises(DatasetError, match=f"missing file {path}"):
            fn(1)


@pytest.mark.parametrize("build", BUILDERS, ids=IDS)
def test_size_mismatch_names_the_file(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    named = t.write_raw_label(0, np.ones((H + 1, W), dtype=np.int64))
    ds = _load(t)
    with pytest.raises(DatasetError) as err:
        ds[0]
    assert str(named) in str(err.value)
    ds[1]


@pytest.mark.parametrize("build", [b for b in BUILDERS if b is not build_labpics], ids=IDS[:-1])
def test_label_id_outside_spec_names_the_file(tmp_path: Path, build) -> None:
    t = build(tmp_path)
    raw = np.ones((H, W), dtype=np.int64)
    raw[2, 3] = t.bad_raw_id
    named = t.write_raw_label(0, raw)
    ds = _load(t)
    with pytest.raises(DatasetError, match=rf"\[{t.bad_raw_id}\]") as err:
        ds.load_labels(0)
    assert str(named) in str(err.value)


def test_optional_instance_folders_absent(tmp_path: Path) -> None:
    t = build_bdd100k(tmp_path)
    shutil.rmtree(t.root / "labels" / "ins_seg")
    assert all(s.instances is None for s in _load(t))
    t = build_cityscapes(tmp_path)
    for p in (t.root / "gtFine").rglob("*_instanceIds.png"):
        p.unlink()
    assert all(s.instances is None for s in _load(t))


# --------------------------------------------------------------------------- real data


def test_real_camvid(camvid_root: Path) -> None:
    train = load_dataset("camvid", root=camvid_root, split="train")
    val = load_dataset("camvid", root=camvid_root, split="val")
    assert (len(train), len(val)) == (367, 101)
    for ds, i in ((train, 0), (train, 366), (val, 50)):
        s = ds[i]
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3 and s.label.shape == s.image.shape[:2]
        ids = set(np.unique(s.label).tolist())
        assert ids <= set(range(11)) | {255} and len(ids - {255}) >= 3
        assert s.instances is None
