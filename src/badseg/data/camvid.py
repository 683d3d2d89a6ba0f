"""CamVid in the SegNet layout: ``train/``, ``trainannot/``, ``train.txt`` (and val/test).

11 classes; label id 11 (void) is mapped to the ignore index. No instance labels: object
instances are derived as connected components (``badseg.data.instances``).
Reference: Brostow et al., Pattern Recognition Letters 2009.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, require_dir
from badseg.data.io import read_label_png
from badseg.data.types import IGNORE_INDEX, DatasetSpec

CAMVID_SPEC = DatasetSpec(
    name="camvid",
    classes=("sky", "building", "pole", "road", "sidewalk", "vegetation", "sign", "fence", "car",
             "pedestrian", "bicyclist"),
    kinds=("stuff", "stuff", "object", "stuff", "stuff", "stuff", "object", "stuff", "object",
           "object", "object"),
    palette=np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
                      [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                      [0, 128, 192]]),
)
CAMVID_VOID = 11


@DATASETS.register("camvid")
class CamVid(FileDataset):
    """CamVid reader. ``root`` holds ``{split}.txt`` listing "image label" relative paths;
    without the list file, ``{split}/`` and ``{split}annot/`` are paired by file name."""

    SPEC = CAMVID_SPEC
    RAW_VOID = CAMVID_VOID

    def __init__(self, root: str | Path | None, split: str = "train") -> None:
        if root is None:
            raise DatasetError("camvid: pass --root, the folder holding train/, trainannot/, train.txt")
        root = require_dir(Path(root), "camvid")
        listing = root / f"{split}.txt"
        files: list[SampleFiles] = []
        lines: list[str] = []
        if listing.is_file():
            for n, line in enumerate(listing.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise DatasetError(f"camvid: {listing}:{n}: expected 'image label', got {line!r}")
                img, lab = (root / p.lstrip("/") for p in parts)
                files.append(SampleFiles(Path(parts[0]).stem, img, lab))
                lines.append(line)
        else:
            image_dir = require_dir(root / split, "camvid")
            label_dir = require_dir(root / f"{split}annot", "camvid")
            files = [SampleFiles(p.stem, p, label_dir / p.name) for p in sorted(image_dir.glob("*.png"))]
        super().__init__(CAMVID_SPEC, files, root / split, (listing, lines) if lines else None)

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, None]:
        label = read_label_png(files.label).astype(np.int64)
        label[label == CAMVID_VOID] = IGNORE_INDEX
        return label, None
