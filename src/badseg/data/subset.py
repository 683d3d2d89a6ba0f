"""A view on some indices of a dataset (quick looks, splits of one folder)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from badseg.data.base import SegDataset
from badseg.data.types import Sample


class Subset(SegDataset):
    """``base`` restricted to ``indices`` (in that order)."""

    def __init__(self, base: SegDataset, indices: Iterable[int]) -> None:
        self.base = base
        self.indices = list(indices)
        self.spec = base.spec

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Sample:
        return self.base[self.indices[index]]

    def load_labels(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.base.load_labels(self.indices[index])

    def sample_id(self, index: int) -> str:
        return self.base.sample_id(self.indices[index])

    def check_image(self, index: int, shape: tuple[int, ...]) -> None:
        self.base.check_image(self.indices[index], shape)
