"""Beatrix (Ma et al. 2023, "Beatrix Resurrections: Robust Backdoor Detection via Gram
Matrices") adapted to segmentation (BADSEG §7, Appendix E, Table 17).

Features: the model's feature map (``SegModel.features``, N×D×h×w), its channels averaged in
``channels`` equal groups first (so a 512-channel decoder gives a tractable Gram matrix). For
each order p = 1..``orders`` the Gram matrix ``G_p = (F^p)(F^p)ᵀ / L`` over the L pixels,
taken as ``sign(G_p)·|G_p|^(1/p)``, upper triangle → one vector per order.

Statistics per group from the defender's clean images (clean training images): the median m
and the median absolute deviation s of every entry; the bounds are ``m ± k·s``. An image's
deviation is Gram-OOD's, ``Σ_p Σ_entries (l − g)/|l| where g < l, (g − u)/|u| where g > u``,
against its group's bounds (higher = more suspicious).

Groups, as the paper adapts them (a segmentation image has no single label):

* ``beatrix``: the image's dominant ground-truth class (largest pixel area); a test
  group without clean reference images falls back to the statistics of all clean images;
* ``beatrix-class``: one group, the Gram features taken only over the pixels of the selected
  class (``class_name``, e.g. car) in the ground truth; images without that class use all pixels.

The ground truth of a poisoned test image is its original (clean) label. ``clean="originals"``
scores the poisoned images against their own clean originals instead of random clean test images
(``detector_inputs``): a control that separates the trigger from the poisoned set's selection of
scenes (docs/results.md, "Defenses on CamVid").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from badseg.defenses.base import (
    DEFENSES,
    CleanImages,
    DefenseContext,
    clean_fraction,
    detector_inputs,
    detector_result,
    to_tensor,
)
from badseg.data.resize import resize_pair

EPS = 1e-6


def reduce_channels(feats: torch.Tensor, channels: int) -> torch.Tensor:
    """N×D×h×w → N×min(D, channels)×h×w by averaging ``channels`` (near-)equal groups of channels."""
    n, d, h, w = feats.shape
    if d <= channels:
        return feats
    return F.adaptive_avg_pool1d(feats.permute(0, 2, 3, 1).reshape(-1, 1, d), channels).view(n, h, w, channels) \
        .permute(0, 3, 1, 2)


def gram_features(feats: torch.Tensor, orders: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """N×c×h×w features (and optional bool N×h×w pixel masks) → N×orders×(c(c+1)/2): the upper
    triangle of ``sign(G_p)|G_p|^(1/p)`` per order, ``G_p`` the pixel-mean Gram matrix of ``F^p``."""
    n, c = feats.shape[:2]
    f = feats.double().flatten(2)
    if mask is None:
        weight = torch.full((n, f.shape[2]), 1.0 / f.shape[2], dtype=f.dtype, device=f.device)
    else:
        m = mask.flatten(1).to(f.dtype)
        weight = m / m.sum(1, keepdim=True).clamp(min=1)
    iu = torch.triu_indices(c, c)
    out = []
    for p in range(1, orders + 1):
        fp = f.pow(p)
        g = torch.einsum("ncl,nl,ndl->ncd", fp, weight, fp)
        g = g.sign() * g.abs().pow(1.0 / p)
        out.append(g[:, iu[0], iu[1]])
    return torch.stack(out, 1).float()


@dataclass
class GramBounds:
    """Per-entry median and MAD of clean Gram features (orders × entries), and the bounds."""

    median: torch.Tensor
    mad: torch.Tensor
    k: float

    @classmethod
    def fit(cls, grams: torch.Tensor, k: float) -> GramBounds:
        """From clean Gram features N×orders×T."""
        med = grams.median(0).values
        return cls(med, (grams - med).abs().median(0).values, k)

    def deviation(self, grams: torch.Tensor) -> torch.Tensor:
        """Gram-OOD deviation of N×orders×T features → float N."""
        lo, hi = self.median - self.k * self.mad, self.median + self.k * self.mad
        below = F.relu(lo - grams) / (lo.abs() + EPS)
        above = F.relu(grams - hi) / (hi.abs() + EPS)
        return (below + above).sum((1, 2))


def dominant_class(labels: np.ndarray, ignore_index: int) -> np.ndarray:
    """int64 (N, H, W) labels → the class with the most pixels in each (ignore excluded; −1 if none)."""
    out = []
    for lab in labels:
        v = lab[lab != ignore_index]
        out.append(int(np.bincount(v).argmax()) if v.size else -1)
    return np.array(out)


@torch.inference_mode()
def feature_grams(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, orders: int, channels: int,
                  class_id: int | None, batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Gram features N×orders×T of uint8 (N, H, W, 3) ``images``; with ``class_id``, over the
    pixels of that class in ``labels`` (all pixels where it is absent) → (grams, had the class)."""
    device = next(model.parameters()).device
    out, has = [], []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start:start + batch_size]).to(device)
        f = reduce_channels(model.features(x), channels)
        mask = None
        if class_id is not None:
            lab = torch.from_numpy(labels[start:start + batch_size])[:, None].float()
            m = F.interpolate(lab, size=f.shape[-2:], mode="nearest-exact")[:, 0] == class_id
            present = m.flatten(1).any(1)
            m[~present] = True
            mask = m.to(device)
            has.extend(present.tolist())
        out.append(gram_features(f, orders, mask).cpu())
    return torch.cat(out), np.array(has if class_id is not None else [True] * len(images))


def beatrix_scores(ref: torch.Tensor, ref_groups: np.ndarray, test: torch.Tensor, test_groups: np.ndarray,
                   k: float) -> tuple[np.ndarray, int]:
    """Deviation of each test Gram feature from its group's clean bounds → (scores, number of
    test images whose group had no clean reference and used all clean images)."""
    pooled = GramBounds.fit(ref, k)
    bounds = {g: GramBounds.fit(ref[ref_groups == g], k) for g in np.unique(ref_groups)}
    scores = np.empty(len(test))
    fallback = 0
    for i, g in enumerate(test_groups):
        b = bounds.get(g)
        fallback += b is None
        scores[i] = float((b or pooled).deviation(test[i:i + 1])[0])
    return scores, fallback


def _beatrix(ctx: DefenseContext, images: int, orders: int, channels: int, k: float,
             grouping: Literal["dominant", "class"], class_name: str, reference_fraction: float, fpr: float,
             seed: int, clean_images: CleanImages) -> dict[str, Any]:
    from badseg.report.defense_figures import save_score_kde

    spec = ctx.train.spec
    class_id = spec.class_id(class_name) if grouping == "class" else None
    ref = clean_fraction(ctx.train, reference_fraction, seed)
    ref_img, ref_lab = (np.stack(a) for a in zip(*(resize_pair(s.image, s.label, ctx.size)
                                                    for s in (ref[i] for i in range(len(ref))))))
    inputs = detector_inputs(ctx, images, seed, clean_images)
    bs = ctx.cfg.eval_batch_size
    g_ref, ref_has = feature_grams(ctx.model, ref_img, ref_lab, orders, channels, class_id, bs)
    g_c, has_c = feature_grams(ctx.model, inputs.clean, inputs.clean_labels, orders, channels, class_id, bs)
    g_p, has_p = feature_grams(ctx.model, inputs.poisoned, inputs.poisoned_labels, orders, channels, class_id, bs)
    if grouping == "dominant":
        groups = [dominant_class(lab, spec.ignore_index) for lab in (ref_lab, inputs.clean_labels,
                                                                      inputs.poisoned_labels)]
    else:
        if not ref_has.any():
            raise ValueError(f"no clean reference image contains {class_name!r}")
        g_ref = g_ref[torch.from_numpy(ref_has)]
        groups = [np.zeros(int(ref_has.sum()), int), np.zeros(len(g_c), int), np.zeros(len(g_p), int)]
    clean, fb_c = beatrix_scores(g_ref, groups[0], g_c, groups[1], k)
    poisoned, fb_p = beatrix_scores(g_ref, groups[0], g_p, groups[2], k)
    label = "dominant ground-truth class" if grouping == "dominant" else f"selected class {class_name}"
    save_score_kde(clean, poisoned, ctx.figure_path("beatrix" if grouping == "dominant" else "beatrix-class"),
                   title=f"Beatrix ({label})", xlabel="deviation (higher: more suspicious)", log_x=True)
    return detector_result(clean, poisoned, fpr, grouping=grouping, class_name=class_name if class_id is not None
                           else None, n_reference=len(ref), orders=orders, channels=channels, k=k,
                           clean_images=clean_images, fallback_to_all_clean={"clean": fb_c, "poisoned": fb_p},
                           without_class={"clean": int((~has_c).sum()), "poisoned": int((~has_p).sum())}
                           if class_id is not None else None)


@DEFENSES.register("beatrix")
def beatrix(ctx: DefenseContext, images: int = 100, orders: int = 8, channels: int = 32, k: float = 3.0,
            reference_fraction: float = 0.5, fpr: float = 0.05, seed: int = 0,
            clean: CleanImages = "random") -> dict[str, Any]:
    """Groups by the dominant ground-truth class: score up to ``images`` clean and as many poisoned
    test images against clean statistics from a ``reference_fraction`` of the clean training split.
    ``clean``: random clean test images, or the poisoned images' own ``originals``."""
    return _beatrix(ctx, images, orders, channels, k, "dominant", "", reference_fraction, fpr, seed, clean)


@DEFENSES.register("beatrix-class")
def beatrix_class(ctx: DefenseContext, images: int = 100, orders: int = 8, channels: int = 32, k: float = 3.0,
                  class_name: str = "car", reference_fraction: float = 0.5, fpr: float = 0.05,
                  seed: int = 0, clean: CleanImages = "random") -> dict[str, Any]:
    """As ``beatrix``, with Gram features over the pixels of one selected class (``class_name``)."""
    return _beatrix(ctx, images, orders, channels, k, "class", class_name, reference_fraction, fpr, seed, clean)
