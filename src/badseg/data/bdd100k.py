"""BDD100K semantic segmentation (10K images): ``images/10k/{split}/*.jpg`` with
``labels/sem_seg/masks/{split}/*.png`` (train ids 0..18 as in Cityscapes, 255 ignore) and,
when present, instance bitmasks ``labels/ins_seg/bitmasks/{split}/*.png``.

A bitmask is an RGBA PNG: R = category id, G = attribute bits, (B << 8) | A = instance id
(0 = none); instance ids are renumbered 1..n per image.
Reference: Yu et al., "BDD100K: A Diverse Driving Dataset for Heterogeneous Multitask Learning", CVPR 2020.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.cityscapes import cityscapes_like_spec, compact_instances
from badseg.data.io import read_label_png

BDD100K_SPEC = cityscapes_like_spec("bdd100k")


def read_bitmask_instances(path: Path) -> np.ndarray:
    """BDD100K RGBA bitmask → int32 instance map with ids 1..n (0 = no instance)."""
    with Image.open(path) as im:
        if im.mode != "RGBA":
            raise DatasetError(f"bdd100k: bitmask {path} is {im.mode}, expected RGBA")
        rgba = np.asarray(im)
    ids = (rgba[..., 2].astype(np.int64) << 8) | rgba[..., 3]
    return compact_instances(ids, ids > 0)


@DATASETS.register("bdd100k")
class BDD100K(FileDataset):
    """BDD100K 10K semantic segmentation; ``root`` holds ``images/10k/`` and ``labels/``."""

    SPEC = BDD100K_SPEC

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("bdd100k: pass --root, the folder holding images/10k/ and labels/sem_seg/")
        root = require_dir(Path(root), "bdd100k")
        image_dir = require_dir(root / "images" / "10k" / split, "bdd100k")
        label_dir = require_dir(root / "labels" / "sem_seg" / "masks" / split, "bdd100k")
        instance_dir = root / "labels" / "ins_seg" / "bitmasks" / split
        files: list[SampleFiles] = []
        for image in sorted(image_dir.glob("*.jpg")):
            instances = instance_dir / f"{image.stem}.png"
            files.append(SampleFiles(image.stem, image, label_dir / f"{image.stem}.png",
                                     instances if instances.is_file() else None))
        super().__init__(BDD100K_SPEC, files, image_dir)

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, np.ndarray | None]:
        label = read_label_png(files.label).astype(np.int64)
        if files.instances is None:
            return label, None
        return label, read_bitmask_instances(files.instances)
