"""STRIP (Gao et al. 2019) adapted to segmentation (BADSEG §7, Appendix E, Table 15b).

Each test image is superimposed with ``n`` clean images (``(1 − alpha) · x + alpha · overlay``)
drawn from the defender's clean pool (clean training images), all ``n`` copies go through the
model in as few batches as ``batch_size`` allows, and the per-pixel Shannon entropy of the softmax
is averaged over the copies → an entropy map H×W. One score per image:

* ``region="all"``: the mean entropy over all pixels;
* ``region="victim"``: the mean over the pixels the model predicts as the attack's victim class
  on the unperturbed image (the whole image where it predicts none; counted in the result).

A backdoored input keeps its (target) prediction whatever is superimposed, so its entropy is
low: the score is the *negative* mean entropy (higher = more suspicious).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from rich.progress import Progress

from badseg.defenses.base import (
    DEFENSES,
    DefenseContext,
    clean_fraction,
    detector_inputs,
    detector_result,
    resized_images,
    to_tensor,
)


def superimpose(image: torch.Tensor, overlays: torch.Tensor, alpha: float) -> torch.Tensor:
    """``image`` 3×H×W and ``overlays`` N×3×H×W in [0, 1] → N×3×H×W blends."""
    return (1 - alpha) * image.unsqueeze(0) + alpha * overlays


def pixel_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Logits N×C×H×W → Shannon entropy of the softmax per pixel, N×H×W (nats)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1)


@torch.inference_mode()
def strip_entropy_map(model: torch.nn.Module, image: torch.Tensor, overlays: torch.Tensor, n: int,
                      generator: torch.Generator, alpha: float = 0.5, batch_size: int = 100) -> torch.Tensor:
    """Mean per-pixel entropy H×W of ``model`` over ``n`` superimpositions of ``image`` (3×H×W)
    with overlays drawn from ``overlays`` (M×3×H×W, without replacement while ``n ≤ M``)."""
    m = overlays.shape[0]
    pick = torch.randperm(m, generator=generator)[:n] if n <= m else torch.randint(m, (n,), generator=generator)
    device = next(model.parameters()).device
    total = None
    for start in range(0, n, batch_size):
        blends = superimpose(image, overlays[pick[start:start + batch_size]], alpha).to(device)
        h = pixel_entropy(model(blends)).sum(0)
        total = h if total is None else total + h
    return (total / n).cpu()


def aggregate(entropy: torch.Tensor, region: torch.Tensor | None) -> tuple[float, bool]:
    """Negative mean of an entropy map over ``region`` (bool H×W; None or empty: all pixels)
    → (score, whether the region was empty)."""
    empty = region is not None and not bool(region.any())
    if region is None or empty:
        return -float(entropy.mean()), empty
    return -float(entropy[region].mean()), False


@torch.inference_mode()
def strip_scores(model: torch.nn.Module, images: torch.Tensor, overlays: torch.Tensor, n: int, seed: int,
                 alpha: float = 0.5, region_class: int | None = None, batch_size: int = 100,
                 progress: bool = False) -> tuple[np.ndarray, int]:
    """STRIP scores (higher = more suspicious) of ``images`` N×3×H×W → (scores N, number of
    images whose ``region_class`` region was empty). Image ``i`` draws its overlays from
    ``torch.Generator`` seeded with ``SeedSequence([seed, i])``."""
    device = next(model.parameters()).device
    scores, empty = [], 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("STRIP", total=images.shape[0])
        for i, image in enumerate(images):
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
            h = strip_entropy_map(model, image, overlays, n, g, alpha, batch_size)
            region = None
            if region_class is not None:
                region = model(image[None].to(device)).argmax(1)[0].cpu() == region_class
            s, was_empty = aggregate(h, region)
            scores.append(s)
            empty += was_empty
            bar.advance(task)
    return np.array(scores), empty


@DEFENSES.register("strip")
def strip(ctx: DefenseContext, n: int = 100, images: int = 250, alpha: float = 0.5,
          region: Literal["all", "victim"] = "all", pool_fraction: float = 0.5, fpr: float = 0.05,
          batch_size: int = 100, seed: int = 0) -> dict[str, Any]:
    """Score up to ``images`` clean and as many poisoned test images with ``n`` superimpositions
    each, overlays from a clean ``pool_fraction`` of the training split."""
    from badseg.report.defense_figures import save_score_kde

    if region not in ("all", "victim"):
        raise ValueError(f"region must be 'all' or 'victim', got {region!r}")
    pool = clean_fraction(ctx.train, pool_fraction, seed)
    overlays = to_tensor(resized_images([pool[i] for i in range(len(pool))], ctx.size))
    inputs = detector_inputs(ctx, images, seed)
    region_class = ctx.attack.victim if region == "victim" else None
    kw = dict(n=n, seed=seed, alpha=alpha, region_class=region_class, batch_size=batch_size, progress=ctx.progress)
    clean, empty_c = strip_scores(ctx.model, to_tensor(inputs.clean), overlays, **kw)
    poisoned, empty_p = strip_scores(ctx.model, to_tensor(inputs.poisoned), overlays, **kw)
    save_score_kde(clean, poisoned, ctx.figure_path("strip"), title=f"STRIP ({region} pixels, N={n})",
                   xlabel="score = − mean entropy (higher: more suspicious)")
    return detector_result(clean, poisoned, fpr, n_overlays=n, n_pool=len(pool), region=region,
                           empty_region={"clean": empty_c, "poisoned": empty_p})
