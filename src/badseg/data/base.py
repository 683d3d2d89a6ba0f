"""Dataset base class and the validation every reader shares.

A reader lists its files at construction (so an empty split or a missing folder fails at
once, naming the path) and validates each sample as it reads it (size mismatch, label id
outside the spec), raising ``DatasetError`` — never a crash deep inside a DataLoader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from badseg.data.io import read_rgb
from badseg.data.types import DatasetSpec, Sample
from badseg.registry import Registry

#: The dataset readers by name (each reader module registers itself; ``badseg.data.load_dataset`` builds one).
DATASETS: Registry = Registry("dataset")


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed, or inconsistent with its spec."""


@dataclass(frozen=True)
class SampleFiles:
    """Paths that make up one sample on disk (instance file optional)."""

    id: str
    image: Path
    label: Path
    instances: Path | None = None


class SegDataset:
    """Indexable collection of ``Sample`` with a ``DatasetSpec``.

    Subclasses set ``spec`` and implement ``__len__``, ``load(index)`` and, when labels can
    be read without decoding the image, ``load_labels(index)`` (used by the label-only scan
    that decides where an attack applies).
    """

    spec: DatasetSpec

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def load_labels(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(label int64 HxW, instances int32 HxW | None) of sample ``index``."""
        s = self[index]
        return s.label, s.instances

    def sample_id(self, index: int) -> str:
        return self[index].id

    def check_image(self, index: int, shape: tuple[int, ...]) -> None:
        """Raise ``DatasetError`` when sample ``index``'s image is unreadable or not ``shape[:2]`` (H, W),
        without decoding it (readers over files check the header; the label scan calls this)."""

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.load(index % len(self))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class FileDataset(SegDataset):
    """A reader over a list of ``SampleFiles``.

    Subclasses implement ``read_labels(files) -> (label int64 HxW with ignore_index,
    instances int32 HxW | None)``; the image is read as RGB from ``files.image``. Every
    problem (missing file, unreadable file, size mismatch, id outside the spec) raises
    ``DatasetError`` naming the file.
    """

    def __init__(self, spec: DatasetSpec, files: Sequence[SampleFiles], where: str | Path) -> None:
        self.spec = spec
        self.files = list(files)
        if not self.files:
            raise DatasetError(f"{spec.name}: no samples found under {where}")

    def __len__(self) -> int:
        return len(self.files)

    def sample_id(self, index: int) -> str:
        return self.files[index].id

    def read_labels(self, files: SampleFiles) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _checked(self, files: SampleFiles, fn, *paths: Path | None):
        for p in paths:
            if p is not None and not p.exists():  # a folder for readers whose label is a folder of masks
                raise DatasetError(f"{self.spec.name}: missing file {p}")
        try:
            return fn(files)
        except DatasetError:
            raise
        except Exception as e:  # unreadable / corrupt file: name it
            raise DatasetError(f"{self.spec.name}: cannot read sample {files.id} ({paths[0]}): {e}") from e

    def load_labels(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        files = self.files[index % len(self)]
        label, instances = self._checked(files, self.read_labels, files.label, files.instances)
        check_label(label, self.spec, files.label)
        if instances is not None and instances.shape != label.shape:
            raise DatasetError(f"{self.spec.name}: instance map {files.instances} differs in size from {files.label}")
        return label, instances

    def check_image(self, index: int, shape: tuple[int, ...]) -> None:
        files = self.files[index % len(self)]

        def header(f: SampleFiles) -> tuple[int, int]:
            with Image.open(f.image) as im:
                width, height = im.size
                im.verify()  # chunk checksums (PNG) without decoding: finds a cut-short or damaged file
            return height, width

        height, width = self._checked(files, header, files.image)
        if (height, width) != tuple(shape[:2]):
            raise DatasetError(f"{self.spec.name}: image {files.image} is {width}x{height} but its label "
                               f"{files.label} is {shape[1]}x{shape[0]}")

    def load(self, index: int) -> Sample:
        files = self.files[index]
        image = self._checked(files, lambda f: read_rgb(f.image), files.image)
        label, instances = self.load_labels(index)
        check_same_size(image, label, self.spec.name, files.label)
        meta = {"id": files.id, "image_path": str(files.image), "label_path": str(files.label)}
        return Sample(image, label, instances, meta)


def check_label(label: np.ndarray, spec: DatasetSpec, where: str | Path) -> None:
    """Raise ``DatasetError`` naming ``where`` if ``label`` has ids outside ``spec``."""
    bad = (label != spec.ignore_index) & ((label < 0) | (label >= spec.num_classes))
    if bad.any():
        ids = np.unique(label[bad])[:10].tolist()
        raise DatasetError(
            f"{spec.name}: {where} has label ids {ids} outside 0..{spec.num_classes - 1} "
            f"(ignore index {spec.ignore_index})"
        )


def require_dir(path: Path, dataset: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{dataset}: expected folder {path} does not exist")
    return path


def check_same_size(image: np.ndarray, label: np.ndarray, dataset: str, where: str | Path) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DatasetError(
            f"{dataset}: image {image.shape[1]}x{image.shape[0]} and label "
            f"{label.shape[1]}x{label.shape[0]} differ in size ({where})"
        )
