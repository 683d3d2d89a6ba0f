"""Batched inference: predicted label maps for a dataset or a stack of images, and
mmsegmentation's sliding-window inference (``SlideWindow``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def _device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 8, device: str | torch.device = "auto"
) -> torch.Tensor:
    """Images float N×3×H×W in [0, 1] → predicted labels int64 N×H×W (on the CPU)."""
    dev = _device(device)
    model.eval().to(dev)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(dev)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
            out.append(model(batch).argmax(1).cpu())
    return torch.cat(out)


@torch.inference_mode()
def predict_batches(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(indices int64 N, pred int64 N×H×W)`` over ``dataset`` in index order.

    ``dataset[i]`` is an image tensor 3×H×W in [0, 1] or a tuple whose first item is one
    (e.g. ``SegTorchDataset``). Images within a batch must share a size (use
    ``batch_size=1`` for datasets of mixed sizes). Predictions are returned on the CPU.
    """
    dev = _device(device)
    model.eval().to(dev)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    start = 0
    for batch in loader:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
            pred = model(images.to(dev)).argmax(1).cpu()
        yield torch.arange(start, start + pred.shape[0]), pred
        start += pred.shape[0]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows along one side (mmseg's ``slide_inference`` grid): every
    ``stride`` pixels, the last one moved back to end at the border; one window of the whole
    side when the side is shorter than the window."""
    count = max(length - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride, length - window), 0) for i in range(count)]


@dataclass(frozen=True)
class SlideWindow:
    """Sliding-window inference: ``window`` (H, W) crops every ``stride`` (H, W) pixels, logits
    averaged over the windows that cover a pixel (mmseg's ``slide_inference``). A side shorter
    than the window is taken whole (no padding), so an image the window covers is one pass."""

    window: tuple[int, int]
    stride: tuple[int, int]

    @staticmethod
    def default_stride(window: tuple[int, int]) -> tuple[int, int]:
        """Two thirds of the window per side (mmseg's configs: 341 for 512 windows)."""
        return tuple(max(1, 2 * w // 3) for w in window)

    def logits(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Images float N×3×H×W → logits N×C×H×W, the windows' logits averaged where they overlap."""
        _, _, h, w = images.shape
        (wh, ww), (sh, sw) = self.window, self.stride
        total: torch.Tensor | None = None
        count = images.new_zeros(1, 1, h, w)
        for y in window_starts(h, wh, sh):
            for x in window_starts(w, ww, sw):
                out = model(images[:, :, y : y + wh, x : x + ww])
                if total is None:
                    total = out.new_zeros(out.shape[0], out.shape[1], h, w)
                total[:, :, y : y + wh, x : x + ww] += out
                count[:, :, y : y + wh, x : x + ww] += 1
        return total / count
