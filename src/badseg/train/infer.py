"""Batched inference: predicted label maps for a dataset or a stack of images."""

from __future__ import annotations

from collections.abc import Iterator

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
