"""BADSEG stage 3, label manipulation (§5.3; Fig. 3, Tables 4, 7 and 21): victim–target pairs.

Class centres: for a mini-batch, the surrogate's penultimate feature map F (N·h·w × D,
``SegModel.features``) and the one-hot labels Y (N·h·w × C) downsampled with nearest
neighbour to the feature resolution give ``C_b = diag(1 / |Y_c|) Yᵀ F``; the global centres
are the mean of the per-batch centres over the batches in which each class occurs
("Global averaging", §5.3). Ignore pixels count for no class.

Distances: Euclidean between centres, then divided by the largest distance between two
classes present, so the farthest pair is 1 and the matrix is comparable across surrogates.
The paper shows "normalized" distances without its formula; its smallest values (0.067 in
Table 4, 0.109 in Table 21) are not 0, which rules out min–max scaling, and dividing by the
maximum is the reading that fits.

A pair's suitable vectors follow the classes' kinds: object–object → O2O, object–stuff →
O2B and B2O, stuff–stuff → B2B (Table 4's last column). Rank agreement between two
surrogates is Spearman's ρ and Kendall's τ over the pair distances and the overlap of their
top-k pairs (Table 7).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from badseg.data.io import atomic_write_bytes, write_json
from badseg.data.types import IGNORE_INDEX, DatasetSpec
from badseg.models import SegModel

PAIRS_JSON = "pairs.json"
PAIRS_MD = "pairs.md"
HEATMAP = "pair_distances.png"


def batch_centres(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Class centres of one mini-batch.

    Args:
        features: (N, D, h, w) feature map.
        labels: (N, H, W) int64 labels at input resolution; resized to (h, w) with nearest
            neighbour (pixel centres, ``nearest-exact``).
    Returns:
        (centres (C, D) float64, zero rows for absent classes; pixel counts (C,) int64).
    """
    n, d, h, w = features.shape
    lab = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest-exact")[:, 0].long()
    lab = lab.reshape(-1)
    keep = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    feats = features.permute(0, 2, 3, 1).reshape(-1, d)[keep].double()
    onehot = F.one_hot(lab[keep], num_classes).double()  # (M, C)
    counts = onehot.sum(0)
    centres = onehot.T @ feats / counts.clamp(min=1)[:, None]
    return centres, counts.long()


@dataclass
class ClassCentres:
    """Global class centres of a surrogate over the surrogate set.

    Attributes:
        centres: (C, D) float64, NaN rows for classes never seen.
        pixels: (C,) feature-map pixels per class; ``images``: images containing each class.
        batches: number of mini-batches averaged; ``n_images``: images seen.
    """

    centres: np.ndarray
    pixels: np.ndarray
    images: np.ndarray
    batches: int
    n_images: int

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.centres).any(axis=1)


@torch.no_grad()
def class_centres(model: SegModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                  device: torch.device | str = "cpu") -> ClassCentres:
    """Average the per-batch centres of ``model.features`` over ``batches`` of (images (N, 3, H, W)
    in [0, 1], labels (N, H, W))."""
    model.eval()
    total: torch.Tensor | None = None
    seen_batches = torch.zeros(num_classes, dtype=torch.float64)
    pixels = torch.zeros(num_classes, dtype=torch.int64)
    images = torch.zeros(num_classes, dtype=torch.int64)
    n = n_images = 0
    for x, y in batches:
        feats = model.features(x.to(device)).cpu()
        c, counts = batch_centres(feats, y, num_classes)
        present = counts > 0
        total = c * present[:, None] if total is None else total + c * present[:, None]
        seen_batches += present
        pixels += counts
        for label in y:
            ids = torch.unique(label)
            images[ids[(ids >= 0) & (ids < num_classes)]] += 1
        n += 1
        n_images += y.shape[0]
    if total is None:
        raise ValueError("no batches to compute class centres from")
    centres = (total / seen_batches.clamp(min=1)[:, None]).numpy()
    centres[seen_batches.numpy() == 0] = np.nan
    return ClassCentres(centres, pixels.numpy(), images.numpy(), n, n_images)


def distance_matrix(centres: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances (C, C) divided by the largest one; NaN for absent classes."""
    diff = centres[:, None, :] - centres[None, :, :]
    dist = np.sqrt((diff * diff).sum(-1))
    finite = dist[np.isfinite(dist)]
    peak = finite.max() if finite.size else 0.0
    return dist / peak if peak > 0 else dist


def suitable_vectors(spec: DatasetSpec, a: int, b: int) -> tuple[str, ...]:
    """Attack vectors a class pair suits, from the classes' kinds (Table 4)."""
    kinds = {spec.kind(a), spec.kind(b)}
    if kinds == {"object"}:
        return ("o2o",)
    if kinds == {"stuff"}:
        return ("b2b",)
    return ("o2b", "b2o")


@dataclass(frozen=True)
class Pair:
    """One unordered class pair in a ranking (rank 1 = closest)."""

    rank: int
    a: int
    b: int
    distance: float
    vectors: tuple[str, ...]

    def to_dict(self, spec: DatasetSpec) -> dict[str, Any]:
        return {"rank": self.rank, "pair": [spec.classes[self.a], spec.classes[self.b]], "distance": self.distance,
                "vectors": list(self.vectors)}


def rank_pairs(dist: np.ndarray, spec: DatasetSpec) -> list[Pair]:
    """All pairs of present classes (finite distance), closest first; ties broken by class ids."""
    pairs = [(float(dist[i, j]), i, j) for i, j in itertools.combinations(range(spec.num_classes), 2)
             if np.isfinite(dist[i, j])]
    pairs.sort()
    return [Pair(r, i, j, d, suitable_vectors(spec, i, j)) for r, (d, i, j) in enumerate(pairs, 1)]


@dataclass(frozen=True)
class PairChoice:
    """The victim → target chosen for a vector, and why."""

    victim: str
    target: str
    pair: Pair
    reason: str


def choose_pair(ranking: list[Pair], spec: DatasetSpec, vector: str, centres: ClassCentres,
                min_image_share: float = 0.05) -> PairChoice:
    """The closest pair that fits ``vector`` (INS/CON: any pair with an object class).

    Direction: the victim is the class whose kind the vector needs (e.g. the object for
    O2B); when both fit (O2O, B2B, INS/CON object–object) it is the class covering more
    surrogate pixels, so more images can be poisoned. The victim must occur in at least
    ``min_image_share`` of the surrogate images (a rarely seen class, like the paper's
    ``train``, cannot be attacked; Table 11b).
    """
    need = {"o2o": ("object", "object"), "o2b": ("object", "stuff"), "b2o": ("stuff", "object"),
            "b2b": ("stuff", "stuff"), "ins": ("object", None), "con": ("object", None)}
    if vector not in need:
        raise ValueError(f"no pair rule for vector {vector!r}; valid: {', '.join(need)}")
    want_victim, want_target = need[vector]
    for p in ranking:
        options = []
        for v, t in ((p.a, p.b), (p.b, p.a)):
            if spec.kind(v) == want_victim and (want_target is None or spec.kind(t) == want_target):
                options.append((v, t))
        options = [(v, t) for v, t in options if centres.images[v] >= min_image_share * centres.n_images]
        if not options:
            continue
        v, t = max(options, key=lambda vt: centres.pixels[vt[0]])
        why = (f"closest pair (rank {p.rank}, normalised distance {p.distance:.4f}) that fits {vector.upper()}: "
               f"{spec.classes[v]} ({spec.kind(v)}) → {spec.classes[t]} ({spec.kind(t)})")
        if len(options) > 1:
            why += f"; {spec.classes[v]} is the victim as it covers more surrogate pixels"
        return PairChoice(spec.classes[v], spec.classes[t], p, why)
    raise ValueError(f"no class pair in {spec.name} fits {vector!r} with a victim in >= {min_image_share:.0%} "
                     "of the surrogate images")


def rank_agreement(dist_a: np.ndarray, dist_b: np.ndarray, ks: tuple[int, ...] = (20, 50, 100)) -> dict[str, Any]:
    """Agreement of two pair rankings (Table 7) over the pairs present in both.

    Returns Spearman's ρ and Kendall's τ (with p-values) of the pair distances and, for each
    k, the number of shared pairs among the k closest of each (k is capped at the number of
    pairs; ``top_k_of`` says out of how many).
    """
    iu = np.triu_indices(dist_a.shape[0], k=1)
    a, b = dist_a[iu], dist_b[iu]
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        raise ValueError(f"need at least 3 common class pairs to compare rankings, got {a.size}")
    rho = stats.spearmanr(a, b)
    tau = stats.kendalltau(a, b)
    order_a, order_b = np.argsort(a, kind="stable"), np.argsort(b, kind="stable")
    overlap = {str(k): int(len(set(order_a[: min(k, a.size)]) & set(order_b[: min(k, a.size)]))) for k in ks}
    return {"pairs": int(a.size), "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue), "top_k_overlap": overlap,
            "top_k_of": {str(k): min(k, int(a.size)) for k in ks}}


def pairs_markdown(ranking: list[Pair], spec: DatasetSpec, top: int = 20) -> str:
    """Table 4 as Markdown: rank, class pair, normalised distance, suitable attacks."""
    lines = ["| rank | class pair | distance | suitable attacks |", "|---|---|---|---|"]
    lines += [f"| {p.rank} | ({spec.classes[p.a]}, {spec.classes[p.b]}) | {p.distance:.4f} | "
              f"{', '.join(v.upper() for v in p.vectors)} |" for p in ranking[:top]]
    return "\n".join(lines)


def write_pair_outputs(centres: ClassCentres, dist: np.ndarray, ranking: list[Pair], spec: DatasetSpec,
                       out: str | Path, title: str = "", extra: dict[str, Any] | None = None) -> Path:
    """``out/pairs.json`` (matrix, ranking, per-class counts), ``out/pairs.md`` (top 20) and
    ``out/pair_distances.png`` (heatmap); returns ``out``."""
    from badseg.report.stage_figures import save_distance_heatmap

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    present = centres.present
    write_json(out / PAIRS_JSON, {
        **(extra or {}),
        "classes": list(spec.classes), "kinds": list(spec.kinds), "present": present.tolist(),
        "pixels": centres.pixels.tolist(), "images": centres.images.tolist(), "batches": centres.batches,
        "n_images": centres.n_images,
        "normalisation": "Euclidean distance between class centres / the largest such distance",
        "distances": [[None if not np.isfinite(v) else float(v) for v in row] for row in dist],
        "ranking": [p.to_dict(spec) for p in ranking],
    })
    absent = [spec.classes[i] for i in np.flatnonzero(~present)]
    note = f"\n\nNot in the surrogate set (no centre): {', '.join(absent)}." if absent else ""
    atomic_write_bytes(out / PAIRS_MD, (f"# {title or 'Closest class pairs'}\n\n{pairs_markdown(ranking, spec)}"
                                        f"{note}\n").encode())
    save_distance_heatmap(dist, spec, out / HEATMAP, title=title)
    return out


def load_distances(path: str | Path) -> np.ndarray:
    """The normalised distance matrix from a ``pairs.json`` (NaN for absent classes)."""
    d = json.loads(Path(path).read_text())
    return np.array([[np.nan if v is None else v for v in row] for row in d["distances"]], dtype=float)
