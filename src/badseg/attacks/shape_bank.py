"""Silhouettes of real target-class objects, for B2O's fabricated regions (BADSEG §4).

Collected once from a dataset's labels (deterministic scan order); when the dataset has no
instance of the class, a generic upright ellipse stands in and ``source`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from badseg.data.base import SegDataset
from badseg.data.instances import object_instances


@dataclass(frozen=True)
class ShapeBank:
    """Cropped bool masks (h, w) of one class, with where they came from."""

    class_name: str
    shapes: tuple[np.ndarray, ...]
    source: str

    def __len__(self) -> int:
        return len(self.shapes)

    def scaled(self, index: int, scale: float) -> np.ndarray:
        """Silhouette ``index`` resized by ``scale`` (nearest neighbour), bool (h, w)."""
        m = self.shapes[index]
        if scale == 1.0:
            return m
        h, w = max(1, round(m.shape[0] * scale)), max(1, round(m.shape[1] * scale))
        return np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))

    @classmethod
    def ellipse(cls, class_name: str, height: int = 24, width: int = 40) -> ShapeBank:
        r, c = np.ogrid[:height, :width]
        m = ((r - (height - 1) / 2) / (height / 2)) ** 2 + ((c - (width - 1) / 2) / (width / 2)) ** 2 <= 1
        return cls(class_name, (m,), "ellipse (no instance found in the dataset)")

    @classmethod
    def from_dataset(cls, dataset: SegDataset, class_id: int, max_shapes: int = 64,
                     min_area: int = 150, max_scan: int = 400) -> ShapeBank:
        """Scan up to ``max_scan`` samples' labels for ``class_id`` instances."""
        name = dataset.spec.classes[class_id]
        shapes: list[np.ndarray] = []
        for i in range(min(len(dataset), max_scan)):
            label, instances = dataset.load_labels(i)
            for inst in object_instances(label, instances, dataset.spec, [class_id], min_area):
                r0, c0, r1, c1 = inst.bbox
                shapes.append(inst.mask[r0:r1, c0:c1].copy())
                if len(shapes) >= max_shapes:
                    return cls(name, tuple(shapes), "dataset")
        return cls(name, tuple(shapes), "dataset") if shapes else cls.ellipse(name)
