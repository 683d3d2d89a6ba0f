"""ADE20K SceneParsing (ADEChallengeData2016): ``images/{training,validation}/*.jpg`` with
``annotations/{training,validation}/*.png`` (ids 0..150); split "train" → training, "val" → validation.

Label 0 ("other") → 255, 1..150 → 0..149. ``root`` is ``ADEChallengeData2016`` or holds it.
Class order, palette and object/stuff kinds follow the ADE20K-150 panoptic category list
(``isthing``: 100 things → "object", 50 stuff) of Mask2Former's
``mask2former/data/datasets/register_ade20k_panoptic.py`` (``ADE20K_150_CATEGORIES``);
names are the first synonym of each class.
Reference: Zhou et al., "Scene Parsing through ADE20K Dataset", CVPR 2017.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.io import read_label_png
from badseg.data.types import IGNORE_INDEX, DatasetSpec

# (name, isthing, colour) in label order (label id = raw id - 1).
_ADE20K_CATEGORIES: tuple[tuple[str, int, tuple[int, int, int]], ...] = (
    ("wall", 0, (120, 120, 120)), ("building", 0, (180, 120, 120)), ("sky", 0, (6, 230, 230)),
    ("floor", 0, (80, 50, 50)), ("tree", 0, (4, 200, 3)), ("ceiling", 0, (120, 120, 80)),
    ("road", 0, (140, 140, 140)), ("bed", 1, (204, 5, 255)), ("window", 1, (230, 230, 230)),
    ("grass", 0, (4, 250, 7)), ("cabinet", 1, (224, 5, 255)), ("sidewalk", 0, (235, 255, 7)),
    ("person", 1, (150, 5, 61)), ("earth", 0, (120, 120, 70)), ("door", 1, (8, 255, 51)),
    ("table", 1, (255, 6, 82)), ("mountain", 0, (143, 255, 140)), ("plant", 0, (204, 255, 4)),
    ("curtain", 1, (255, 51, 7)), ("chair", 1, (204, 70, 3)), ("car", 1, (0, 102, 200)),
    ("water", 0, (61, 230, 250)), ("painting", 1, (255, 6, 51)), ("sofa", 1, (11, 102, 255)),
    ("shelf", 1, (255, 7, 71)), ("house", 0, (255, 9, 224)), ("sea", 0, (9, 7, 230)),
    ("mirror", 1, (220, 220, 220)), ("rug", 0, (255, 9, 92)), ("field", 0, (112, 9, 255)),
    ("armchair", 1, (8, 255, 214)), ("seat", 1, (7, 255, 224)), ("fence", 1, (255, 184, 6)),
    ("desk", 1, (10, 255, 71)), ("rock", 0, (255, 41, 10)), ("wardrobe", 1, (7, 255, 255)),
    ("lamp", 1, (224, 255, 8)), ("tub", 1, (102, 8, 255)), ("rail", 1, (255, 61, 6)),
    ("cushion", 1, (255, 194, 7)), ("base", 0, (255, 122, 8)), ("box", 1, (0, 255, 20)),
    ("column", 1, (255, 8, 41)), ("signboard", 1, (255, 5, 153)), ("chest of drawers", 1, (6, 51, 255)),
    ("counter", 1, (235, 12, 255)), ("sand", 0, (160, 150, 20)), ("sink", 1, (0, 163, 255)),
    ("skyscraper", 0, (140, 140, 140)), ("fireplace", 1, (250, 10, 15)), ("refrigerator", 1, (20, 255, 0)),
    ("grandstand", 0, (31, 255, 0)), ("path", 0, (255, 31, 0)), ("stairs", 1, (255, 224, 0)),
    ("runway", 0, (153, 255, 0)), ("case", 1, (0, 0, 255)), ("pool table", 1, (255, 71, 0)),
    ("pillow", 1, (0, 235, 255)), ("screen door", 1, (0, 173, 255)), ("stairway", 0, (31, 0, 255)),
    ("river", 0, (11, 200, 200)), ("bridge", 0, (255, 82, 0)), ("bookcase", 1, (0, 255, 245)),
    ("blind", 0, (0, 61, 255)), ("coffee table", 1, (0, 255, 112)), ("toilet", 1, (0, 255, 133)),
    ("flower", 1, (255, 0, 0)), ("book", 1, (255, 163, 0)), ("hill", 0, (255, 102, 0)),
    ("bench", 1, (194, 255, 0)), ("countertop", 1, (0, 143, 255)), ("stove", 1, (51, 255, 0)),
    ("palm", 1, (0, 82, 255)), ("kitchen island", 1, (0, 255, 41)), ("computer", 1, (0, 255, 173)),
    ("swivel chair", 1, (10, 0, 255)), ("boat", 1, (173, 255, 0)), ("bar", 0, (0, 255, 153)),
    ("arcade machine", 1, (255, 92, 0)), ("hovel", 0, (255, 0, 255)), ("bus", 1, (255, 0, 245)),
    ("towel", 1, (255, 0, 102)), ("light", 1, (255, 173, 0)), ("truck", 1, (255, 0, 20)),
    ("tower", 0, (255, 184, 184)), ("chandelier", 1, (0, 31, 255)), ("awning", 1, (0, 255, 61)),
    ("street lamp", 1, (0, 71, 255)), ("booth", 1, (255, 0, 204)), ("tv", 1, (0, 255, 194)),
    ("plane", 1, (0, 255, 82)), ("dirt track", 0, (0, 10, 255)), ("clothes", 1, (0, 112, 255)),
    ("pole", 1, (51, 0, 255)), ("land", 0, (0, 194, 255)), ("bannister", 1, (0, 122, 255)),
    ("escalator", 0, (0, 255, 163)), ("ottoman", 1, (255, 153, 0)), ("bottle", 1, (0, 255, 10)),
    ("buffet", 0, (255, 112, 0)), ("poster", 0, (143, 255, 0)), ("stage", 0, (82, 0, 255)),
    ("van", 1, (163, 255, 0)), ("ship", 1, (255, 235, 0)), ("fountain", 1, (8, 184, 170)),
    ("conveyer belt", 0, (133, 0, 255)), ("canopy", 0, (0, 255, 92)), ("washer", 1, (184, 0, 255)),
    ("plaything", 1, (255, 0, 31)), ("pool", 0, (0, 184, 255)), ("stool", 1, (0, 214, 255)),
    ("barrel", 1, (255, 0, 112)), ("basket", 1, (92, 255, 0)), ("falls", 0, (0, 224, 255)),
    ("tent", 0, (112, 224, 255)), ("bag", 1, (70, 184, 160)), ("minibike", 1, (163, 0, 255)),
    ("cradle", 0, (153, 0, 255)), ("oven", 1, (71, 255, 0)), ("ball", 1, (255, 0, 163)),
    ("food", 1, (255, 204, 0)), ("step", 1, (255, 0, 143)), ("tank", 0, (0, 255, 235)),
    ("trade name", 1, (133, 255, 0)), ("microwave", 1, (255, 0, 235)), ("pot", 1, (245, 0, 255)),
    ("animal", 1, (255, 0, 122)), ("bicycle", 1, (255, 245, 0)), ("lake", 0, (10, 190, 212)),
    ("dishwasher", 1, (214, 255, 0)), ("screen", 1, (0, 204, 255)), ("blanket", 0, (20, 0, 255)),
    ("sculpture", 1, (255, 255, 0)), ("hood", 1, (0, 153, 255)), ("sconce", 1, (0, 41, 255)),
    ("vase", 1, (0, 255, 204)), ("traffic light", 1, (41, 0, 255)), ("tray", 1, (41, 255, 0)),
    ("trash can", 1, (173, 0, 255)), ("fan", 1, (0, 245, 255)), ("pier", 0, (71, 0, 255)),
    ("crt screen", 0, (122, 0, 255)), ("plate", 1, (0, 255, 184)), ("monitor", 1, (0, 92, 255)),
    ("bulletin board", 1, (184, 255, 0)), ("shower", 0, (0, 133, 255)), ("radiator", 1, (255, 214, 0)),
    ("glass", 1, (25, 194, 194)), ("clock", 1, (102, 255, 0)), ("flag", 1, (92, 0, 255)),
)

ADE20K_SPEC = DatasetSpec(
    name="ade20k",
    classes=tuple(name for name, _, _ in _ADE20K_CATEGORIES),
    kinds=tuple("object" if thing else "stuff" for _, thing, _ in _ADE20K_CATEGORIES),
    palette=np.array([colour for _, _, colour in _ADE20K_CATEGORIES], dtype=np.uint8),
)
_SPLIT_FOLDERS = {"train": "training", "val": "validation"}


@DATASETS.register("ade20k")
class ADE20K(FileDataset):
    """ADE20K SceneParsing reader; ``split`` is "train"/"val" (or "training"/"validation")."""

    SPEC = ADE20K_SPEC
    RAW_IDS = np.arange(1, ADE20K_SPEC.num_classes + 1)  # 0 = "other", ignored
    RAW_VOID = 0

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("ade20k: pass --root, the ADEChallengeData2016 folder (or a folder holding it)")
        root = require_dir(Path(root), "ade20k")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        folder = _SPLIT_FOLDERS.get(split, split)
        image_dir = require_dir(root / "images" / folder, "ade20k")
        label_dir = require_dir(root / "annotations" / folder, "ade20k")
        files = [SampleFiles(p.stem, p, label_dir / f"{p.stem}.png") for p in sorted(image_dir.glob("*.jpg"))]
        super().__init__(ADE20K_SPEC, files, image_dir)

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, None]:
        raw = read_label_png(files.label).astype(np.int64)
        bad = raw > ADE20K_SPEC.num_classes
        if bad.any():
            ids = np.unique(raw[bad])[:10].tolist()
            raise DatasetError(f"ade20k: {files.label} has label ids {ids} outside 0..{ADE20K_SPEC.num_classes}")
        return np.where(raw == 0, IGNORE_INDEX, raw - 1), None
