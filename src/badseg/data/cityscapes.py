"""Cityscapes (gtFine): ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
``gtFine/{split}/{city}/*_gtFine_labelIds.png`` (and, when present, ``*_gtFine_instanceIds.png``).

Label ids are mapped to the 19 standard train ids (everything else → 255). Instance ids
``class * 1000 + k`` become small positive ids (0 = no instance) on train-id pixels.
The 19-class definition here is shared with BDD100K (same train ids) and the synthetic
street scenes: use ``cityscapes_like_spec(name)``.
Reference: Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.io import read_label_png
from badseg.data.types import IGNORE_INDEX, ClassKind, DatasetSpec

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# The 8 Cityscapes "things" are objects; the 11 other classes are stuff.
CITYSCAPES_KINDS: tuple[ClassKind, ...] = ("stuff",) * 11 + ("object",) * 8
CITYSCAPES_PALETTE = np.array(
    [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
     [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
     [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
     [0, 80, 100], [0, 0, 230], [119, 11, 32]],
    dtype=np.uint8,
)


def cityscapes_like_spec(name: str) -> DatasetSpec:
    """The 19-class Cityscapes train-id spec under another dataset ``name``."""
    return DatasetSpec(name=name, classes=CITYSCAPES_CLASSES, kinds=CITYSCAPES_KINDS,
                       palette=CITYSCAPES_PALETTE)


CITYSCAPES_SPEC = cityscapes_like_spec("cityscapes")

# labelId → trainId (cityscapesScripts labels.py); ids without a train id → ignore.
MAX_LABEL_ID = 33
_TRAIN_ID_OF_LABEL_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                         24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_TO_TRAIN = np.full(MAX_LABEL_ID + 1, IGNORE_INDEX, dtype=np.int64)
LABEL_TO_TRAIN[list(_TRAIN_ID_OF_LABEL_ID)] = list(_TRAIN_ID_OF_LABEL_ID.values())
#: The label id of each train id (its first), for writing train ids back as label ids.
TRAIN_TO_LABEL = np.array([min(k for k, v in _TRAIN_ID_OF_LABEL_ID.items() if v == t) for t in range(19)])


def compact_instances(ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Renumber the distinct values of ``ids`` where ``keep`` is true as 1..n (int32, 0 elsewhere)."""
    out = np.zeros(ids.shape, dtype=np.int32)
    _, inverse = np.unique(ids[keep], return_inverse=True)
    out[keep] = inverse.reshape(-1) + 1
    return out


@DATASETS.register("cityscapes")
class Cityscapes(FileDataset):
    """Cityscapes fine annotations; ``root`` holds ``leftImg8bit/`` and ``gtFine/``."""

    SPEC = CITYSCAPES_SPEC
    RAW_IDS = TRAIN_TO_LABEL
    RAW_VOID = 0  # "unlabeled"

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("cityscapes: pass --root, the folder holding leftImg8bit/ and gtFine/")
        root = require_dir(Path(root), "cityscapes")
        image_dir = require_dir(root / "leftImg8bit" / split, "cityscapes")
        label_dir = require_dir(root / "gtFine" / split, "cityscapes")
        files: list[SampleFiles] = []
        for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            city_dir = label_dir / image.parent.name
            instances = city_dir / f"{stem}_gtFine_instanceIds.png"
            files.append(SampleFiles(stem, image, city_dir / f"{stem}_gtFine_labelIds.png",
                                     instances if instances.is_file() else None))
        super().__init__(CITYSCAPES_SPEC, files, image_dir)

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, np.ndarray | None]:
        raw = read_label_png(files.label).astype(np.int64)
        bad = (raw < 0) | (raw > MAX_LABEL_ID)
        if bad.any():
            ids = np.unique(raw[bad])[:10].tolist()
            raise DatasetError(f"cityscapes: {files.label} has label ids {ids} outside the Cityscapes ids "
                               f"0..{MAX_LABEL_ID}")
        label = LABEL_TO_TRAIN[raw]
        if files.instances is None:
            return label, None
        raw_instances = read_label_png(files.instances).astype(np.int64)
        if raw_instances.shape != label.shape:
            raise DatasetError(f"cityscapes: instance map {files.instances} differs in size from {files.label}")
        return label, compact_instances(raw_instances, (raw_instances >= 1000) & (label != IGNORE_INDEX))
