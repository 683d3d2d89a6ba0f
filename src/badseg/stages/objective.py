"""The stage-2 objective: surrogate loss against the poisoned labels (BADSEG eq. 3) plus stealth.

``loss = CE(f_s(x ⊕ t), y_t) + λ · max(0, PSNR_min − mean PSNR(x, x ⊕ t))``

* ``CE`` is the pixel cross-entropy of the frozen surrogate ``f_s`` on the triggered images
  against the poisoned labels ``y_t`` (the attack's relabel policy; ignore = 255), averaged
  over all labelled pixels, as the model would be trained (eq. 3).
* The stealth term is not in the paper's eq. 3, which keeps stealth through the option grid
  of Table 20 alone. Without one, a clean surrogate rewards whatever trigger most disturbs
  the victim pixels: on synthetic streets the search then picks the largest, most opaque
  options (half the car's width, 5 stamps, intensity 0.7; 25 dB). A weighted ``1 − SSIM``
  does not work either: a clean surrogate's CE moves by ~1e-5–1e-2 between options while
  1 − SSIM moves by ~1e-3, so the weight alone decides. The term is therefore a budget on the
  stealth metric itself: while the mean PSNR of the triggered images (data range 1, as
  ``badseg.metrics.stealth``; images the trigger leaves unchanged are left out, as poisoning
  skips them) is at least ``psnr_min``, it costs nothing and eq. 3 alone decides; each dB
  below costs ``λ`` (default 1 nat per dB, far above the CE differences, so in effect a
  constraint). The default budget, 35 dB, is the least stealthy BADSEG attack in the paper's
  Table 13 (B2O, 35.03 dB).
* SSIM (``ssim``, the stealth metric's definition, differentiable) is logged alongside.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from badseg.data.types import IGNORE_INDEX
from badseg.stages.relaxed import SearchSet

_SIGMA = 1.5
_PSNR_CAP = 100.0  # dB: identical images
_RADIUS = int(3.5 * _SIGMA + 0.5)  # scipy's truncate=3.5 → 5 px, 11 taps

#: objective(triggered (B, 3, H, W), batch) -> {"loss": scalar, ...other scalar terms}.
Objective = Callable[[torch.Tensor, SearchSet], dict[str, torch.Tensor]]


def _gauss(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = torch.arange(-_RADIUS, _RADIUS + 1, device=device, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / _SIGMA) ** 2)
    return (g / g.sum()).to(dtype)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image, (N,) for images (N, 3, H, W); differentiable.

    Matches ``badseg.metrics.stealth`` (``skimage``-style SSIM) on the interior: a valid
    separable Gaussian filter is the reflect-padded one with the border cropped.
    """
    if min(x.shape[-2:]) < 2 * _RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * _RADIUS + 1} px per side, got {tuple(x.shape)}")
    c = x.shape[1]
    g = _gauss(x.device, x.dtype)
    gy = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    gx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(a, gy, groups=c), gx, groups=c)

    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR per image in dB, (N,) for images (N, 3, H, W); differentiable, capped at 100 dB."""
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3)).clamp_min(data_range**2 * 10 ** (-_PSNR_CAP / 10))
    return 10.0 * torch.log10(data_range**2 / mse)


class SurrogateObjective:
    """Eq. 3 with the frozen surrogate plus ``stealth_weight · max(0, psnr_min − PSNR)``.

    Returns ``{"loss", "attack" (CE over all labelled pixels), "stealth" (mean dB below the
    budget), and for logging "asr_ce" (CE over the ASR region), "psnr", "ssim" (batch means)}``.
    """

    def __init__(self, model: nn.Module, stealth_weight: float = 1.0, psnr_min: float = 35.0) -> None:
        self.model = model.eval().requires_grad_(False)
        self.stealth_weight = stealth_weight
        self.psnr_min = psnr_min

    def __call__(self, triggered: torch.Tensor, batch: SearchSet) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(self.model(triggered), batch.targets, ignore_index=IGNORE_INDEX, reduction="none")
        labelled = batch.targets != IGNORE_INDEX
        attack = ce[labelled].mean()
        asr_ce = ce[batch.asr].mean() if batch.asr.any() else attack * 0
        terms = stealth_terms(batch.images, triggered, self.psnr_min)
        return {"loss": attack + self.stealth_weight * terms["stealth"], "attack": attack, "asr_ce": asr_ce.detach(),
                **terms}


def stealth_terms(images: torch.Tensor, triggered: torch.Tensor, psnr_min: float) -> dict[str, torch.Tensor]:
    """``stealth`` = max(0, psnr_min − mean PSNR over the images the trigger changed) (differentiable),
    and for logging that mean ``psnr`` and the mean ``ssim``."""
    per_image = psnr(images, triggered)
    stamped = per_image < _PSNR_CAP  # images the trigger changed (poisoning skips the others)
    quality = per_image[stamped].mean() if stamped.any() else per_image.mean()
    stealth = torch.relu(psnr_min - quality) if stamped.any() else quality * 0
    with torch.no_grad():
        similarity = ssim(images, triggered).mean()
    return {"stealth": stealth, "psnr": quality.detach(), "ssim": similarity}
