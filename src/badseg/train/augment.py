"""Joint image/label augmentation and the torch ``Dataset`` adapter used for training.

The transforms are mmsegmentation's training pipeline in miniature: random rescale
(``RandomResize`` with a ratio range), random crop to a fixed size (``RandomCrop``; padding
with 0 for the image and 255 = ignore for the label; with ``cat_max_ratio`` < 1 the crop is
re-drawn up to ``CROP_REDRAWS`` times while one class covers more than that share of its
labelled pixels), horizontal flip (``RandomFlip``). Labels are resized with nearest neighbour
only, so no new label ids appear (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from badseg.data.resize import resize_pair
from badseg.data.types import IGNORE_INDEX, Sample

Array = np.ndarray | torch.Tensor

#: mmseg's ``RandomCrop``: at most this many re-draws of a crop that fails ``cat_max_ratio``;
#: the last draw is kept whatever it holds.
CROP_REDRAWS = 10


@dataclass(frozen=True)
class AugmentConfig:
    """Random scale in ``scale_range`` → random crop to ``crop_size`` (H, W), re-drawn while one
    class covers more than ``cat_max_ratio`` of it (1: never) → flip with ``hflip_p``."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] | None = None
    hflip_p: float = 0.5
    cat_max_ratio: float = 1.0


def crop_is_varied(label: Array, cat_max_ratio: float) -> bool:
    """mmseg's ``RandomCrop`` test: the crop's labelled (not ignore) pixels hold more than one
    class and none covers ``cat_max_ratio`` or more of them."""
    lab = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    _, counts = np.unique(lab[lab != IGNORE_INDEX], return_counts=True)
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def crop_origin(label: Array, crop_size: tuple[int, int], cat_max_ratio: float,
                draw: Callable[[int], int], first: tuple[int, int] | None = None) -> tuple[int, int]:
    """Top-left (y, x) of a ``crop_size`` crop of the (H, W) ``label`` (H ≥ crop height, W ≥ crop
    width), each coordinate drawn uniformly by ``draw(n)`` (an int in [0, n)), y first, unless
    ``first`` gives the first draw; re-drawn up to ``CROP_REDRAWS`` times while
    ``crop_is_varied`` fails (``cat_max_ratio`` < 1)."""
    ch, cw = crop_size
    h, w = label.shape[-2:]

    def origin() -> tuple[int, int]:
        y = draw(h - ch + 1)
        return y, draw(w - cw + 1)

    y, x = origin() if first is None else first
    if cat_max_ratio < 1.0:
        for _ in range(CROP_REDRAWS):
            if crop_is_varied(label[y : y + ch, x : x + cw], cat_max_ratio):
                break
            y, x = origin()
    return y, x


def augment(image: Array, label: Array, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[Array, Array]:
    """Randomly rescale, crop and flip an (image uint8 H×W×3, label int64 H×W) pair.

    All randomness comes from ``rng``; inputs may be numpy or torch and the outputs have the
    same type. Image pad value 0, label pad value 255 (ignore).
    """
    as_torch = isinstance(image, torch.Tensor)
    img = image.cpu().numpy() if as_torch else np.asarray(image)
    lab = label.cpu().numpy() if as_torch else np.asarray(label)
    lab = lab.astype(np.int64, copy=False)

    scale = rng.uniform(*cfg.scale_range)
    h, w = lab.shape
    img, lab = resize_pair(img, lab, (max(1, round(h * scale)), max(1, round(w * scale))))

    if cfg.crop_size is not None:
        ch, cw = cfg.crop_size
        ph, pw = max(ch - lab.shape[0], 0), max(cw - lab.shape[1], 0)
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=0)
            lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
        y, x = crop_origin(lab, (ch, cw), cfg.cat_max_ratio, lambda n: int(rng.integers(0, n)))
        img, lab = img[y : y + ch, x : x + cw], lab[y : y + ch, x : x + cw]

    if rng.random() < cfg.hflip_p:
        img, lab = img[:, ::-1], lab[:, ::-1]

    img, lab = np.ascontiguousarray(img), np.ascontiguousarray(lab)
    if as_torch:
        return torch.from_numpy(img), torch.from_numpy(lab)
    return img, lab


class SegTorchDataset(torch.utils.data.Dataset):
    """Any indexable of ``badseg.data.Sample`` → (image float 3×H×W in [0, 1], label int64 H×W).

    The samples given here are already poisoned (the trigger is stamped *before*
    augmentation, upstream in ``poisoning/``), so the backdoor is learned under the same
    rescale/crop/flip a camera pipeline would apply.

    Args:
        samples: indexable of ``Sample`` (e.g. a dataset reader or a ``PoisonedDataset``).
        size: optional fixed (H, W) every sample is first resized to.
        augment: optional ``AugmentConfig`` applied after the fixed resize.
        seed: base seed; item ``i`` of epoch ``e`` draws from ``SeedSequence([seed, e, i])``,
            so results do not depend on worker count or order. Call ``set_epoch`` each epoch
            (``fit`` does); with DataLoader workers this needs non-persistent workers.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        size: tuple[int, int] | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.samples = samples
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        image, label = sample.image, sample.label
        if self.size is not None:
            image, label = resize_pair(image, label, self.size)
        if self.augment is not None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
            image, label = augment(image, label, self.augment, rng)
        image = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255)
        return image, torch.from_numpy(np.require(label, requirements=["C", "W"])).to(torch.int64)
