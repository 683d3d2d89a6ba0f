"""Reproducibility: torch randomness under an explicit seed, and the deterministic switch.

torch layers draw their initial weights (and dropout its masks) from torch's global
generator, with no way to hand them another. ``seeded(seed)`` runs a block on that generator
seeded with ``seed`` and gives the caller's state back afterwards (``torch.random.fork_rng``),
so what the block draws depends on ``seed`` alone — not on what ran before, e.g. a surrogate
trained first — and the block leaves no trace on anything drawn after it. Library code seeds
torch only this way, never by setting the global seed for good.

``deterministic(True)`` turns on ``torch.use_deterministic_algorithms`` for a block (and
restores the previous setting): with it the same config and seed give the same metrics on
the same machine (``RunConfig.deterministic``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's generators (CPU and every CUDA device) seeded with ``seed``;
    their earlier state is restored when it ends."""
    with torch.random.fork_rng(devices=_cuda_devices()):
        torch.random.manual_seed(seed)
        yield


def loader_generator(seed: int) -> torch.Generator:
    """A generator of its own for a ``DataLoader`` (its workers' base seed and any shuffling),
    so loader workers are seeded from ``seed`` and not from the global generator."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Within the block, use only deterministic torch kernels when ``enabled``; the previous
    setting comes back afterwards. An op that has no deterministic kernel warns (on CUDA,
    bilinear upsampling's backward, which every decoder here uses): the guarantee of equal
    metrics holds on the CPU. cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG``, set here when absent."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
