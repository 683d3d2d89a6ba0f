"""``SegModel``: the one interface every segmentation network in badseg has.

A ``SegModel`` is encoder → decoder → 1×1 (or 3×3) classifier, wrapped so that callers pass
float images in [0, 1] of any size and get logits at the input resolution:

1. normalise with the backbone's mean/std (inside the model, DESIGN §3);
2. pad right/bottom with zeros (= the mean colour) to a multiple of ``size_divisor`` so every
   backbone (Swin windows, ViT patches, stride-32 CNNs) sees a valid size;
3. ``encoder(x)`` → list of feature maps in smp order ``[x, 1/2, 1/4, 1/8, 1/16, 1/32]``;
4. ``decoder(feats)`` → ``N×D×(H'/s)×(W'/s)``: the *feature map* of the model;
5. ``classifier`` → logits, bilinearly upsampled to the padded size and cropped back to H×W.

``features(x)`` returns step 4 cropped to the un-padded image: the map used for class
centres (BADSEG stage 3) and by feature-space defenses (Beatrix, Fine-Pruning).
``feature_layer`` is the module whose output that is (a forward hook on it sees the padded
map), i.e. the module to prune.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegModel(nn.Module):
    """Segmentation network taking [0, 1] images and returning full-resolution logits.

    Args:
        encoder: normalised ``N×3×H×W`` → list of feature maps (smp convention).
        decoder: that list → ``N×D×(H/feature_stride)×(W/feature_stride)``.
        classifier: ``N×D×h×w`` → ``N×C×h×w`` logits.
        feature_stride: spatial stride of the decoder output w.r.t. the input.
        size_divisor: inputs are padded to a multiple of this.
        mean, std: per-channel normalisation applied to the [0, 1] input.
        name: registry name, for messages and checkpoints.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        *,
        feature_stride: int,
        size_divisor: int = 32,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        name: str = "",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = classifier
        self.feature_stride = feature_stride
        self.size_divisor = size_divisor
        self.name = name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_layer(self) -> nn.Module:
        """The module whose output is the feature map (``features`` before cropping)."""
        return self.decoder

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    @property
    def feature_dim(self) -> int:
        return self.classifier.in_channels

    def _padded_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected N×3×H×W images in [0, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        d = self.size_divisor
        x = (x - self.mean) / self.std
        x = F.pad(x, (0, (-w) % d, 0, (-h) % d))
        return self.decoder(self.encoder(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images ``N×3×H×W`` → feature map ``N×D×ceil(H/s)×ceil(W/s)``, s = ``feature_stride``."""
        f = self._padded_features(x)
        s = self.feature_stride
        return f[..., : math.ceil(x.shape[-2] / s), : math.ceil(x.shape[-1] / s)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images ``N×3×H×W`` → logits ``N×C×H×W``."""
        h, w = x.shape[-2:]
        logits = self.classifier(self._padded_features(x))
        d = self.size_divisor
        padded = (h + (-h) % d, w + (-w) % d)
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]
