"""Pascal VOC 2012 segmentation: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNG,
ids 0..20, 255 = border/ignore), ``SegmentationObject/*.png`` (instance ids, 255 border → 0)
and ``ImageSets/Segmentation/{split}.txt``.

``root`` may be the ``VOC2012`` folder itself, or hold ``VOCdevkit/VOC2012`` or ``VOC2012``.
Reference: Everingham et al., "The Pascal Visual Object Classes (VOC) Challenge", IJCV 2010.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.io import read_label_png
from badseg.data.types import IGNORE_INDEX, DatasetSpec

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def voc_palette(n: int) -> np.ndarray:
    """The VOC colour map (VOCdevkit ``labelcolormap``): bits of the id spread over R, G, B."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


VOC_SPEC = DatasetSpec(
    name="voc",
    classes=VOC_CLASSES,
    kinds=("stuff",) + ("object",) * 20,
    palette=voc_palette(len(VOC_CLASSES)),
)


def find_voc2012(root: Path) -> Path:
    """The ``VOC2012`` folder: ``root`` itself, ``root/VOCdevkit/VOC2012`` or ``root/VOC2012``."""
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DatasetError(f"voc: no JPEGImages/ under {root}, {root / 'VOCdevkit' / 'VOC2012'} or {root / 'VOC2012'}")


@DATASETS.register("voc")
class VOC(FileDataset):
    """Pascal VOC 2012 segmentation reader (splits from ``ImageSets/Segmentation/{split}.txt``)."""

    SPEC = VOC_SPEC

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("voc: pass --root, the VOCdevkit/VOC2012 folder (or a folder holding it)")
        voc = find_voc2012(require_dir(Path(root), "voc"))
        label_dir = require_dir(voc / "SegmentationClass", "voc")
        object_dir = voc / "SegmentationObject"
        listing = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"voc: split list {listing} does not exist")
        files: list[SampleFiles] = []
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        for sample_id in ids:
            if sample_id:
                instances = object_dir / f"{sample_id}.png"
                files.append(SampleFiles(sample_id, voc / "JPEGImages" / f"{sample_id}.jpg",
                                         label_dir / f"{sample_id}.png",
                                         instances if instances.is_file() else None))
        super().__init__(VOC_SPEC, files, listing, (listing, ids))

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, np.ndarray | None]:
        label = read_label_png(files.label).astype(np.int64)
        if files.instances is None:
            return label, None
        instances = read_label_png(files.instances).astype(np.int32)
        instances[instances == IGNORE_INDEX] = 0
        return label, instances
