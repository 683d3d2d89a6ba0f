"""Metrics (BADSEG appendix C, DESIGN §4): CBA / PBA / ASR, stealth, detection."""

from badseg.metrics.detection import (
    auc_score,
    detection_metrics,
    detection_report,
    metrics_at_threshold,
    threshold_at_fpr,
    threshold_sigma,
)
from badseg.metrics.segmentation import (
    AttackMeter,
    SegmentationMeter,
    confusion_matrix,
    miou,
    per_class_iou,
)
from badseg.metrics.stealth import LPIPS, LPIPSUnavailable, StealthMeter, load_lpips, psnr, ssim

__all__ = [
    "LPIPS",
    "AttackMeter",
    "LPIPSUnavailable",
    "SegmentationMeter",
    "StealthMeter",
    "auc_score",
    "confusion_matrix",
    "detection_metrics",
    "detection_report",
    "load_lpips",
    "metrics_at_threshold",
    "miou",
    "per_class_iou",
    "psnr",
    "ssim",
    "threshold_at_fpr",
    "threshold_sigma",
]
