"""The two data types every part of badseg speaks: ``Sample`` and ``DatasetSpec``.

Conventions (DESIGN §3): image uint8 HxWx3 RGB, label int64 HxW with ``ignore_index``
(255) for unlabelled pixels, optional int32 instance map HxW (0 = no instance, ids unique
within the image), and ``meta["id"]`` a stable sample identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ClassKind = Literal["object", "stuff"]
IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's labels mean.

    Attributes:
        name: registry name of the reader.
        classes: class names, index = label id.
        kinds: ``"object"`` (countable things) or ``"stuff"`` (regions) per class.
        palette: uint8 array (C, 3), one display colour per class.
        ignore_index: label id of unlabelled pixels.
    """

    name: str
    classes: tuple[str, ...]
    kinds: tuple[ClassKind, ...]
    palette: np.ndarray
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.kinds):
            raise ValueError(f"{self.name}: {len(self.classes)} classes but {len(self.kinds)} kinds")
        bad = sorted({k for k in self.kinds if k not in ("object", "stuff")})
        if bad:
            raise ValueError(f"{self.name}: class kinds must be 'object' or 'stuff', got {bad}")
        palette = np.asarray(self.palette, dtype=np.uint8)
        if palette.shape != (len(self.classes), 3):
            raise ValueError(f"{self.name}: palette shape {palette.shape}, expected ({len(self.classes)}, 3)")
        object.__setattr__(self, "palette", palette)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_id(self, name: str | int) -> int:
        """Label id of a class given by name (case-insensitive) or id; clear error otherwise."""
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < self.num_classes:
                raise ValueError(f"{self.name}: class id {name} outside 0..{self.num_classes - 1}")
            return int(name)
        key = name.strip().lower().replace("_", " ")
        for i, c in enumerate(self.classes):
            if c.lower() == key:
                return i
        raise ValueError(f"{self.name} has no class {name!r}; classes: {', '.join(self.classes)}")

    def kind(self, class_id: int) -> ClassKind:
        return self.kinds[class_id]

    def is_object(self, class_id: int) -> bool:
        return self.kinds[class_id] == "object"

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k == "object")

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k == "stuff")

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Label HxW → RGB uint8 HxWx3 with the palette; ignore pixels are black."""
        out = np.zeros((*label.shape, 3), dtype=np.uint8)
        valid = (label >= 0) & (label < self.num_classes)
        out[valid] = self.palette[label[valid]]
        return out


@dataclass
class Sample:
    """One image with its labels.

    Attributes:
        image: uint8 (H, W, 3) RGB.
        label: int64 (H, W), ``ignore_index`` for unlabelled pixels.
        instances: int32 (H, W) instance ids (0 = none), or None when the dataset has none.
        meta: at least ``{"id": str}``; readers add source paths.
    """

    image: np.ndarray
    label: np.ndarray
    instances: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"image must be uint8 HxWx3, got {self.image.dtype} {self.image.shape}")
        if self.label.shape != self.image.shape[:2]:
            raise ValueError(f"label shape {self.label.shape} != image shape {self.image.shape[:2]}")
        if self.label.dtype != np.int64:
            self.label = self.label.astype(np.int64)
        if self.instances is not None:
            if self.instances.shape != self.label.shape:
                raise ValueError(f"instance map shape {self.instances.shape} != label shape {self.label.shape}")
            if self.instances.dtype != np.int32:
                self.instances = self.instances.astype(np.int32)

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))
