"""Segments and the prompts SAM is given for them (BADSEG §8).

SAM is class-agnostic: it segments whatever a prompt points at. The segments of an image are
its object instances (``data.instances.object_instances``: the dataset's instance map, or
connected components when it has none, as for CamVid) and the connected components of each
stuff class (road, sky, LabPics' background). A prompt is a point inside a segment or its
bounding box, encoded as SAM's two-point sparse prompt (``victims.PromptableModel``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from badseg.data.instances import Instance, object_instances
from badseg.data.types import DatasetSpec

PromptKind = Literal["point", "box", "mixed"]
PROMPT_KINDS: tuple[str, ...] = ("point", "box", "mixed")
#: SAM point labels: 1 foreground point, -1 padding, 2 / 3 box corners.
POINT_LABELS, BOX_LABELS = (1, -1), (2, 3)


@dataclass(frozen=True)
class Prompt:
    """A point ``(x, y)`` or a box ``(x0, y0, x1, y1)`` (inclusive corners), in image pixels."""

    kind: Literal["point", "box"]
    xy: tuple[float, ...]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords float (2, 2), labels int64 (2,)) in SAM's two-point encoding."""
        if self.kind == "point":
            return torch.tensor([[self.xy[0], self.xy[1]], [0.0, 0.0]]), torch.tensor(POINT_LABELS)
        x0, y0, x1, y1 = self.xy
        return torch.tensor([[x0, y0], [x1, y1]]), torch.tensor(BOX_LABELS)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "xy": [float(v) for v in self.xy]}


def segments(label: np.ndarray, instances: np.ndarray | None, spec: DatasetSpec, min_area: int = 64) -> list[Instance]:
    """Object instances, then the 8-connected components of every stuff class (each ≥ ``min_area`` px)."""
    objects = object_instances(label, instances, spec, spec.object_ids, min_area) if spec.object_ids else []
    stuff = object_instances(label, None, spec, spec.stuff_ids, min_area) if spec.stuff_ids else []
    return objects + stuff


def point_prompt(mask: np.ndarray, rng: np.random.Generator) -> Prompt:
    """A point drawn uniformly from the mask's interior: pixels at least half the largest
    distance to the mask's border (so thin parts and edges, where the segment is ambiguous, are avoided)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(dist >= 0.5 * dist.max())
    k = int(rng.integers(rows.size))
    return Prompt("point", (float(cols[k]), float(rows[k])))


def box_prompt(mask: np.ndarray) -> Prompt:
    """The mask's tight bounding box."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return Prompt("box", (float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])))


def sample_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator) -> Prompt:
    """A prompt of ``kind`` (``mixed``: point or box with equal odds) for a non-empty mask."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; valid: {', '.join(PROMPT_KINDS)}")
    if not mask.any():
        raise ValueError("cannot prompt an empty mask")
    if kind == "mixed":
        kind = "point" if rng.random() < 0.5 else "box"
    return point_prompt(mask, rng) if kind == "point" else box_prompt(mask)


def segment_at(label: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8-connected component of ``label``'s class containing pixel (row, col), bool (H, W)."""
    comps, _ = ndimage.label(label == label[row, col], structure=np.ones((3, 3), bool))
    return comps == comps[row, col]
