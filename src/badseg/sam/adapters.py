"""Bottleneck adapters inserted into a frozen image encoder (BadSAM, AAAI 2024).

An adapter is ``x + up(GELU(down(x)))`` with the up-projection initialised to zero, so a model
with fresh adapters computes exactly what it computed without them; fine-tuning only the
adapters (and the mask decoder) then steers the encoder's features while its weights stay
frozen. The 2025 study of SAM2 backdoors (BadVSFM, arXiv 2512.22046) found that plain
poisoning of a frozen-encoder SAM2 fails because triggered and clean features stay aligned;
adapters are the cheapest way to let the encoder move.
"""

from __future__ import annotations

import torch
from torch import nn


class Adapter(nn.Module):
    """Residual bottleneck MLP over channels.

    Args:
        channels: feature channels C.
        ratio: bottleneck width as a fraction of C (at least 4 channels).
        channels_last: inputs are (N, H, W, C) (Hiera blocks) instead of (N, C, H, W) (CNNs).
    """

    def __init__(self, channels: int, ratio: float = 0.25, channels_last: bool = False) -> None:
        super().__init__()
        hidden = max(4, int(round(channels * ratio)))
        self.down = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, channels)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x + self.up(self.act(self.down(x)))
        y = x.permute(0, 2, 3, 1)
        return x + self.up(self.act(self.down(y))).permute(0, 3, 1, 2)


def insert_adapters(blocks: nn.ModuleList | nn.Sequential, channels: list[int], ratio: float = 0.25,
                    channels_last: bool = False, start: int = 0) -> nn.ModuleList:
    """An adapter on the output of every ``blocks[i]`` with i ≥ ``start`` (``channels[i]`` channels).

    Applied with forward hooks, so the blocks and their state-dict keys are unchanged (a
    checkpoint saved without adapters still loads); register the returned list on the model.
    """
    if len(channels) != len(blocks):
        raise ValueError(f"{len(blocks)} blocks but {len(channels)} channel counts")
    adapters = nn.ModuleList()
    for i in range(start, len(blocks)):
        adapter = Adapter(channels[i], ratio, channels_last)
        blocks[i].register_forward_hook(lambda module, args, output, a=adapter: a(output))
        adapters.append(adapter)
    return adapters
