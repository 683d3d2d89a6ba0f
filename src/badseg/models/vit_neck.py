"""Plain ViT / DeiT as a multi-level encoder for UPerNet (as mmsegmentation builds it).

A plain ViT has one 1/16 token grid. mmseg's ViT-UPerNet recipes (``upernet_vit-b16``,
``upernet_deit-s16``) take the outputs of blocks (2, 5, 8, 11) and resample them to strides
4/8/16/32; we use the ``Feature2Pyramid`` resampling of mmseg's BEiT/MAE configs:
two stride-2 deconvs (with BN + GELU between) → 1/4, one deconv → 1/8, identity → 1/16,
2×2 max-pool → 1/32. (mmseg's ViT/DeiT configs use ``MultiLevelNeck``, which interpolates
instead of learning the upsampling; the decoder above it is the same.)
"""

from __future__ import annotations

import timm
import torch
from torch import nn

VIT_BLOCKS = (2, 5, 8, 11)


class ViTPyramidEncoder(nn.Module):
    """timm ViT → ``[x, empty 1/2, 1/4, 1/8, 1/16, 1/32]`` feature maps (smp encoder order).

    Args:
        timm_name: e.g. ``vit_base_patch16_224`` or ``deit_small_patch16_224``; built with
            ``dynamic_img_size=True`` (position embeddings interpolated to any input whose
            sides are multiples of the patch size), never with downloaded weights.
        blocks: indices of the transformer blocks whose outputs are used.
    """

    def __init__(self, timm_name: str, blocks: tuple[int, ...] = VIT_BLOCKS) -> None:
        super().__init__()
        self.vit = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        self.blocks = blocks
        dim = self.vit.embed_dim
        self.out_channels = [3, 0, dim, dim, dim, dim]
        self.to_stride4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
        )
        self.to_stride8 = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
        self.to_stride32 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f4, f8, f16, f32 = self.vit.forward_intermediates(x, indices=list(self.blocks), intermediates_only=True)
        n, _, h, w = x.shape
        empty = x.new_empty(n, 0, h // 2, w // 2)
        return [x, empty, self.to_stride4(f4), self.to_stride8(f8), f16, self.to_stride32(f32)]
