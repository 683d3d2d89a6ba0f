"""Training and inference (DESIGN §3 ``train/``): augmentation, the dataset adapter, ``fit``,
and batched prediction."""

from badseg.train.augment import AugmentConfig, SegTorchDataset, augment
from badseg.train.fit import CHECKPOINT, TRAIN_LOG, FitConfig, fit, poly_lr, train_step
from badseg.train.infer import SlideWindow, predict, predict_batches

__all__ = [
    "CHECKPOINT",
    "TRAIN_LOG",
    "AugmentConfig",
    "FitConfig",
    "SegTorchDataset",
    "SlideWindow",
    "augment",
    "fit",
    "poly_lr",
    "predict",
    "predict_batches",
    "train_step",
]
