"""Datasets: readers registered by name, each returning ``Sample`` and a ``DatasetSpec``.

Example:
    >>> from badseg.data import load_dataset
    >>> ds = load_dataset("synthetic", split="train", length=8)
    >>> ds[0].image.shape
    (128, 256, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from badseg.data.base import DATASETS, DatasetError, FileDataset, SampleFiles, SegDataset
from badseg.data.types import IGNORE_INDEX, DatasetSpec, Sample


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", **kwargs: Any) -> SegDataset:
    """Build the reader registered as ``name`` for ``split`` under ``root``."""
    _import_readers()
    return DATASETS.build(name, root=root, split=split, **kwargs)


def dataset_names() -> list[str]:
    _import_readers()
    return DATASETS.names()


def get_spec(name: str) -> DatasetSpec:
    """The ``DatasetSpec`` of a reader without reading any files."""
    _import_readers()
    return DATASETS.get(name).SPEC


def _import_readers() -> None:
    from badseg.data import ade20k, bdd100k, camvid, cityscapes, labpics, synthetic, voc  # noqa: F401


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "DatasetError",
    "DatasetSpec",
    "FileDataset",
    "Sample",
    "SampleFiles",
    "SegDataset",
    "dataset_names",
    "get_spec",
    "load_dataset",
]
