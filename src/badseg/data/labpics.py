"""LabPics (Vector-LabPics V2 per-sample layout, LabPicsChemistry or LabPicsMedical):

    root/{Train,Test}/<sample>/Image.jpg
    root/{Train,Test}/<sample>/Vessels/*.png            one vessel instance mask per PNG
    root/{Train,Test}/<sample>/MaterialsAndParts/*.png  one material / vessel-part mask per PNG (optional)

Split "train" → ``Train``, "test" or "val" → ``Test``. A mask pixel is set where any channel is
non-zero (as in the LabPics Mask R-CNN tutorial, ``cv2.imread(mask, 0) > 0``). Data.json and
SemanticMaps/ are not read. The older ``Simple/{Train,Test}/{Image,Instance}`` layout is not supported.

Label space (3 classes): what a SAM-style attack needs is "which instance is this and is it a
container or its content", not LabPics' ~60 fine material/vessel subclasses (which live in
Data.json and overlap). So: 0 background (stuff, every unmasked pixel), 1 vessel (object),
2 material (object; every MaterialsAndParts mask, i.e. liquids, solids, foams… and also
vessel parts such as corks and labels). Materials lie inside vessels and are drawn over them;
each mask becomes one instance id (vessels first, in file-name order), later masks win overlaps.
Reference: Eppel et al., "Computer vision for recognition of materials and vessels in chemistry
lab settings and the Vector-LabPics data set", ACS Central Science 2020.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.types import DatasetSpec

LABPICS_SPEC = DatasetSpec(
    name="labpics",
    classes=("background", "vessel", "material"),
    kinds=("stuff", "object", "object"),
    palette=np.array([[0, 0, 0], [0, 128, 255], [255, 128, 0]]),
)
VESSEL, MATERIAL = 1, 2
_SPLIT_FOLDERS = {"train": "Train", "test": "Test", "val": "Test"}


def read_mask(path: Path) -> np.ndarray:
    """A LabPics instance mask PNG → bool HxW (any channel non-zero)."""
    with Image.open(path) as im:
        values = np.asarray(im)
    return (values.reshape(values.shape[0], values.shape[1], -1) > 0).any(axis=2)


@DATASETS.register("labpics")
class LabPics(FileDataset):
    """LabPics reader; ``root`` is the LabPicsChemistry (or LabPicsMedical) folder."""

    SPEC = LABPICS_SPEC
    LABEL_FILE = False  # a folder of instance masks per sample

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("labpics: pass --root, the LabPicsChemistry or LabPicsMedical folder")
        root = require_dir(Path(root), "labpics")
        split_dir = require_dir(root / _SPLIT_FOLDERS.get(split, split), "labpics")
        files = [SampleFiles(d.name, d / "Image.jpg", d / "Vessels")
                 for d in sorted(split_dir.iterdir()) if d.is_dir()]
        super().__init__(LABPICS_SPEC, files, split_dir)

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, np.ndarray]:
        with Image.open(files.image) as im:
            width, height = im.size
        materials = files.label.parent / "MaterialsAndParts"
        masks = [(VESSEL, p) for p in sorted(files.label.glob("*.png"))]
        if materials.is_dir():
            masks += [(MATERIAL, p) for p in sorted(materials.glob("*.png"))]
        label = np.zeros((height, width), dtype=np.int64)
        instances = np.zeros((height, width), dtype=np.int32)
        for instance_id, (class_id, path) in enumerate(masks, 1):
            mask = read_mask(path)
            if mask.shape != label.shape:
                raise DatasetError(f"labpics: mask {path} is {mask.shape[1]}x{mask.shape[0]}, "
                                   f"image {files.image} is {width}x{height}")
            label[mask] = class_id
            instances[mask] = instance_id
        return label, instances
