"""Stealth of a trigger: PSNR, SSIM and LPIPS between clean and poisoned images (DESIGN §4).

SSIM is Wang et al. 2004 (Gaussian window σ=1.5, K1=0.01, K2=0.03, population covariance),
per RGB channel and averaged, as ``skimage.metrics.structural_similarity``. LPIPS is Zhang et
al. 2018 with the AlexNet trunk; it needs torchvision's ImageNet AlexNet weights on disk and
never downloads them — without them it is reported as ``None`` with the reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_PAD = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)  # window radius: crop this border
_DATA_RANGE = 255.0


def _check_pair(clean: np.ndarray, poisoned: np.ndarray) -> None:
    if clean.shape != poisoned.shape:
        raise ValueError(f"clean shape {clean.shape} != poisoned shape {poisoned.shape}")
    if clean.ndim not in (3, 4) or clean.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (N, H, W, 3), got shape {clean.shape}")


def _psnr_images(clean: np.ndarray, poisoned: np.ndarray) -> np.ndarray:
    """PSNR per image over the trailing (H, W, 3) axes; inf where the images are identical."""
    diff = clean.astype(np.float64) - poisoned.astype(np.float64)
    mse = (diff * diff).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(_DATA_RANGE**2 / mse)


def _ssim_images(clean: np.ndarray, poisoned: np.ndarray) -> np.ndarray:
    """Mean SSIM per image over the trailing (H, W, 3) axes, channels averaged."""
    if min(clean.shape[-3:-1]) < 2 * _SSIM_PAD + 1:
        raise ValueError(f"SSIM needs images of at least {2 * _SSIM_PAD + 1} pixels per side, got {clean.shape}")
    x = clean.astype(np.float64)
    y = poisoned.astype(np.float64)
    sigma = [0.0] * (x.ndim - 3) + [_SSIM_SIGMA, _SSIM_SIGMA, 0.0]

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=_SSIM_TRUNCATE)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (0.01 * _DATA_RANGE) ** 2
    c2 = (0.03 * _DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    p = _SSIM_PAD
    return s[..., p:-p, p:-p, :].mean(axis=(-3, -2, -1))


def psnr(clean: np.ndarray, poisoned: np.ndarray) -> float:
    """PSNR in dB of two uint8 (H, W, 3) images, data range 255; ``inf`` when identical."""
    _check_pair(clean, poisoned)
    return float(_psnr_images(clean, poisoned))


def ssim(clean: np.ndarray, poisoned: np.ndarray) -> float:
    """SSIM of two uint8 (H, W, 3) images (data range 255, channel axis 2)."""
    _check_pair(clean, poisoned)
    return float(_ssim_images(clean, poisoned))


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed here; the message says why."""


def _alexnet_weights_path(weights: str | Path | None) -> Path:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise LPIPSUnavailable(f"AlexNet weights not found at {path}")
        return path
    path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE
    if not path.is_file():
        raise LPIPSUnavailable(
            f"AlexNet ImageNet weights not found at {path} (no download is attempted); "
            f"copy torchvision's {ALEXNET_WEIGHTS_FILE} there or pass its path"
        )
    return path


class LPIPS:
    """AlexNet LPIPS (v0.1) on uint8 RGB images; lower is more similar.

    The linear calibration layers ship with the ``lpips`` package; the AlexNet trunk is loaded
    from ``weights`` or the torch hub cache. Raises :class:`LPIPSUnavailable` instead of
    downloading when the trunk weights are absent.
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        path = _alexnet_weights_path(weights)
        try:
            import lpips
            import torchvision

            state = torch.load(path, map_location="cpu", weights_only=True)
            alexnet = torchvision.models.alexnet(weights=None)
            alexnet.load_state_dict(state)
            with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
                warnings.simplefilter("ignore")
                model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        except Exception as err:  # any failure here means "unavailable", with the cause
            raise LPIPSUnavailable(f"cannot load AlexNet LPIPS from {path}: {type(err).__name__}: {err}") from err
        # lpips splits alexnet.features into slices whose children keep the feature indices.
        for block in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
            for name, layer in block.named_children():
                layer.load_state_dict(alexnet.features[int(name)].state_dict())
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.weights_path = path

    @torch.no_grad()
    def batch(self, clean: np.ndarray, poisoned: np.ndarray) -> np.ndarray:
        """Distances (N,) for uint8 image batches (N, H, W, 3)."""

        def to_input(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device).permute(0, 3, 1, 2).float()
            return t / 127.5 - 1.0

        d = self.model(to_input(clean), to_input(poisoned))
        return d.flatten().cpu().numpy().astype(np.float64)

    def __call__(self, clean: np.ndarray, poisoned: np.ndarray) -> float:
        """Distance between two uint8 (H, W, 3) images."""
        _check_pair(clean, poisoned)
        return float(self.batch(clean[None], poisoned[None])[0])


def load_lpips(
    weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[LPIPS | None, str | None]:
    """``(LPIPS, None)`` when the AlexNet weights are on disk, else ``(None, reason)``; never downloads."""
    try:
        return LPIPS(weights, device), None
    except LPIPSUnavailable as err:
        return None, str(err)


class StealthMeter:
    """Mean PSNR / SSIM / LPIPS over (clean, poisoned) image pairs.

    ``lpips`` is an :class:`LPIPS` (or None: then ``lpips_reason`` says why it is missing);
    :meth:`from_weights` loads it with :func:`load_lpips`.
    """

    def __init__(self, lpips: LPIPS | None = None, lpips_reason: str | None = None) -> None:
        if lpips is None and lpips_reason is None:
            lpips_reason = "LPIPS not requested"
        self.lpips = lpips
        self.lpips_reason = None if lpips is not None else lpips_reason
        self._psnr: list[float] = []
        self._ssim: list[float] = []
        self._lpips: list[float] = []

    @classmethod
    def from_weights(cls, weights: str | Path | None = None, device: str | torch.device = "cpu") -> StealthMeter:
        return cls(*load_lpips(weights, device))

    def update(self, clean: np.ndarray, poisoned: np.ndarray) -> None:
        """Add one pair (H, W, 3) or a batch (N, H, W, 3) of uint8 images."""
        _check_pair(clean, poisoned)
        if clean.ndim == 3:
            clean, poisoned = clean[None], poisoned[None]
        self._psnr.extend(_psnr_images(clean, poisoned).tolist())
        self._ssim.extend(_ssim_images(clean, poisoned).tolist())
        if self.lpips is not None:
            self._lpips.extend(self.lpips.batch(clean, poisoned).tolist())

    def compute(self) -> dict[str, Any]:
        """``psnr`` (``inf`` if any pair is identical), ``ssim``, ``lpips`` (None without
        weights), ``lpips_reason`` and ``n_images``; the means are None before any update."""

        def mean(values: list[float]) -> float | None:
            return float(np.mean(values)) if values else None

        return {
            "psnr": mean(self._psnr),
            "ssim": mean(self._ssim),
            "lpips": mean(self._lpips) if self.lpips is not None else None,
            "lpips_reason": self.lpips_reason,
            "n_images": len(self._psnr),
        }
