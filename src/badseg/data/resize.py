"""Resizing a sample to the model's input size: the image bilinearly (antialiased when
shrinking), label maps and masks with nearest neighbour, so no new label ids appear
(DESIGN §3). Training, evaluation and the report all resize through here."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize uint8 HWC image (bilinear, antialiased when shrinking) and int64 HW label (nearest) to (H, W)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image, label
    img = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].float()
    img = resize_images(img, size).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    return img, resize_label(label, size)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float images (N, C, H, W) to (H, W) as ``resize_pair`` does, without rounding:
    bilinear, antialiased when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an integer (or bool) HW map to (H, W) with nearest-neighbour → int64."""
    if tuple(label.shape) == tuple(size):
        return label.astype(np.int64, copy=False)
    lab = torch.from_numpy(np.require(label, requirements=["C", "W"]))[None, None].float()
    return F.interpolate(lab, size=size, mode="nearest-exact")[0, 0].to(torch.int64).numpy()


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool HW mask to (H, W) with nearest neighbour."""
    return resize_label(mask, size).astype(bool)
