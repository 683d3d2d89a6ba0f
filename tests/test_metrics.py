"""Metric definitions of DESIGN §4, checked against direct computations and scikit-image."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from badseg.metrics import (
    LPIPS,
    AttackMeter,
    SegmentationMeter,
    StealthMeter,
    auc_score,
    confusion_matrix,
    detection_metrics,
    load_lpips,
    miou,
    per_class_iou,
    psnr,
    ssim,
    threshold_at_fpr,
)

IGN = 255


def _random_maps(seed: int, c: int = 5, shape: tuple[int, ...] = (3, 17, 23)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, c, shape)
    target = rng.integers(0, c, shape)
    target[rng.random(shape) < 0.2] = IGN
    return pred, target


def _loop_iou(pred: np.ndarray, target: np.ndarray, c: int) -> list[float]:
    """Per-class IoU the slow way; NaN for classes absent from both."""
    keep = target != IGN
    out = []
    for k in range(c):
        p, t = (pred == k) & keep, (target == k) & keep
        union = (p | t).sum()
        out.append((p & t).sum() / union if union else math.nan)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_confusion_and_miou_match_per_class_loop(seed: int) -> None:
    pred, target = _random_maps(seed)
    conf = confusion_matrix(pred, target, 5)
    assert conf.dtype == np.int64 and conf.shape == (5, 5)
    assert conf.sum() == (target != IGN).sum()
    for i, j in itertools.product(range(5), repeat=2):
        assert conf[i, j] == ((target == i) & (pred == j)).sum()
    expected = _loop_iou(pred, target, 5)
    np.testing.assert_allclose(per_class_iou(conf), expected)
    assert miou(conf) == pytest.approx(np.nanmean(expected))


def test_class_absent_from_gt_and_prediction_is_excluded() -> None:
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 0]])
    iou = per_class_iou(confusion_matrix(pred, target, 3))
    assert math.isnan(iou[2])
    assert miou(confusion_matrix(pred, target, 3)) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_class_predicted_but_absent_from_gt_counts_as_zero() -> None:
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 2]])
    iou = per_class_iou(confusion_matrix(pred, target, 3))
    assert iou[2] == 0.0
    assert miou(confusion_matrix(pred, target, 3)) == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_all_ignore_image_contributes_nothing() -> None:
    meter = SegmentationMeter(4)
    pred, target = _random_maps(0, c=4, shape=(9, 9))
    meter.update(pred, target)
    before = meter.conf.copy()
    meter.update(np.full((9, 9), 3), np.full((9, 9), IGN))
    np.testing.assert_array_equal(meter.conf, before)
    assert SegmentationMeter(4).compute()["miou"] is None


def test_valid_mask_and_out_of_range_checks() -> None:
    pred, target = _random_maps(1)
    valid = np.random.default_rng(1).random(target.shape) < 0.5
    conf = confusion_matrix(pred, target, 5, valid=valid)
    np.testing.assert_array_equal(conf, confusion_matrix(pred[valid], target[valid], 5))
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(pred, np.where(target == 0, 7, target), 5)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(pred.astype(np.float32), target, 5)


def test_numpy_and_torch_inputs_agree() -> None:
    pred, target = _random_maps(2)
    valid = np.random.default_rng(2).random(target.shape) < 0.7
    ref = confusion_matrix(pred, target, 5, valid=valid)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 5, valid=torch.from_numpy(valid)), ref)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(pred), target, 5, valid=valid), ref)
    asr = np.zeros_like(valid)
    asr[:, 3:9, 4:12] = True
    m_np, m_t = AttackMeter(5), AttackMeter(5)
    m_np.update(pred, target, asr, target_class=2, decoy_mask=~asr)
    m_t.update(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(asr), 2, torch.from_numpy(~asr))
    assert m_np.compute() == m_t.compute()


def test_empty_asr_region_gives_none() -> None:
    meter = AttackMeter(3)
    assert meter.compute()["asr"] is None
    label = np.zeros((4, 4), dtype=np.int64)
    meter.update(np.zeros((4, 4), dtype=np.int64), label, np.zeros((4, 4), bool), target_class=1)
    out = meter.compute()
    assert out["asr"] is None and out["n_asr_pixels"] == 0 and out["false_activation"] is None
    assert out["pba"] == pytest.approx(1.0)


def test_asr_is_pooled_over_pixels_not_averaged_per_image() -> None:
    target_class = 1
    meter = AttackMeter(3)
    # image 1: 100-pixel region, all hit; image 2: 10-pixel region, none hit.
    label = np.zeros((10, 20), dtype=np.int64)
    big = np.zeros((10, 20), bool)
    big[:, :10] = True
    meter.update(np.where(big, target_class, 0), label, big, target_class)
    small = np.zeros((10, 20), bool)
    small[0, :10] = True
    meter.update(np.zeros((10, 20), dtype=np.int64), label, small, target_class)
    out = meter.compute()
    assert out["asr"] == pytest.approx(100 / 110)  # per-image mean would be 0.5
    assert out["n_asr_pixels"] == 110


@pytest.mark.parametrize("as_torch", [False, True])
def test_update_returns_per_image_asr_counts_without_ignore_pixels(as_torch) -> None:
    rng = np.random.default_rng(4)
    pred, label = rng.integers(0, 3, (4, 9, 11)), rng.integers(0, 3, (4, 9, 11))
    label[:, 0] = 255
    asr = rng.random((4, 9, 11)) < 0.5
    args = [torch.from_numpy(a) for a in (pred, label, asr)] if as_torch else [pred, label, asr]
    hits, totals = AttackMeter(3).update(*args, target_class=2)
    region = asr & (label != 255)
    assert totals.tolist() == region.sum((1, 2)).tolist()
    assert hits.tolist() == (region & (pred == 2)).sum((1, 2)).tolist()


def test_asr_ignores_ignore_pixels_of_the_original_label() -> None:
    label = np.zeros((4, 4), dtype=np.int64)
    label[0] = IGN
    asr = np.ones((4, 4), bool)
    pred = np.zeros((4, 4), dtype=np.int64)
    pred[0] = 1  # hits only on ignore pixels
    meter = AttackMeter(2)
    meter.update(pred, label, asr, target_class=1)
    assert meter.compute()["asr"] == 0.0 and meter.compute()["n_asr_pixels"] == 12


def test_pba_removes_asr_region_from_prediction_and_gt() -> None:
    label = np.array([[0, 0, 1, 1, 2, 2]])
    asr = np.array([[False, False, True, True, False, False]])
    pred = np.array([[0, 0, 2, 2, 2, 1]])  # ASR pixels flipped to the target class 2
    meter = AttackMeter(3)
    meter.update(pred, label, asr, target_class=2)
    out = meter.compute()
    assert out["asr"] == 1.0
    # outside the ASR region: class 0 perfect, class 1 only a false positive (IoU 0),
    # class 2 one hit out of union 2. The flipped victim pixels count nowhere.
    assert out["pba"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    expected = miou(confusion_matrix(pred[~asr], label[~asr], 3))
    assert out["pba"] == pytest.approx(expected)


def test_false_activation_on_decoy_pixels() -> None:
    label = np.zeros((2, 10), dtype=np.int64)
    asr = np.zeros((2, 10), bool)
    asr[0, :5] = True
    decoy = np.zeros((2, 10), bool)
    decoy[1, :4] = True
    pred = np.zeros((2, 10), dtype=np.int64)
    pred[0, :5] = 1
    pred[1, :1] = 1
    meter = AttackMeter(2)
    meter.update(pred, label, asr, target_class=1, decoy_mask=decoy)
    out = meter.compute()
    assert out["asr"] == 1.0 and out["false_activation"] == pytest.approx(0.25) and out["n_decoy_pixels"] == 4


def _images(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        a = rng.integers(0, 256, (40, 57, 3), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
        return a, b
    yy, xx = np.mgrid[:48, :64]
    a = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) // 8 % 2) * 255], axis=2).astype(np.uint8)
    b = a.copy()
    b[10:22, 20:34] = (0.6 * b[10:22, 20:34] + 0.4 * 255).astype(np.uint8)  # a blended square trigger
    return a, b


@pytest.mark.parametrize(("kind", "seed"), [("random", 0), ("random", 1), ("structured", 0)])
def test_psnr_ssim_match_scikit_image(kind: str, seed: int) -> None:
    a, b = _images(kind, seed)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-6)
    ref = structural_similarity(
        a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-4)


def test_identical_images() -> None:
    a, _ = _images("structured", 0)
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)


def test_stealth_meter_means_and_batches() -> None:
    pairs = [_images("random", 0), _images("random", 1)]
    meter = StealthMeter(lpips_reason="no weights here")
    meter.update(*pairs[0])
    meter.update(np.stack([pairs[1][0]]), np.stack([pairs[1][1]]))
    out = meter.compute()
    assert out["n_images"] == 2
    assert out["psnr"] == pytest.approx(np.mean([psnr(*p) for p in pairs]))
    assert out["ssim"] == pytest.approx(np.mean([ssim(*p) for p in pairs]))
    assert out["lpips"] is None and out["lpips_reason"] == "no weights here"


def test_lpips_absent_reports_reason_fast(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.monotonic()
    fn, reason = load_lpips()
    assert fn is None and "alexnet-owt-7be5be79.pth" in reason and "no download" in reason
    fn, reason = load_lpips(tmp_path / "missing.pth")
    assert fn is None and "missing.pth" in reason
    out = StealthMeter.from_weights(tmp_path / "missing.pth").compute()
    assert out["lpips"] is None and "missing.pth" in out["lpips_reason"]
    assert time.monotonic() - start < 3.0


def test_lpips_uses_the_given_alexnet_weights(tmp_path) -> None:
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(state, tmp_path / "alex.pth")
    fn, reason = load_lpips(tmp_path / "alex.pth")
    assert reason is None and isinstance(fn, LPIPS)
    torch.testing.assert_close(fn.model.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(fn.model.net.slice5, "10").weight, state["features.10.weight"])
    a, b = _images("structured", 0)
    assert fn(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fn(a, b) > 0.0
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    fn, reason = load_lpips(tmp_path / "bad.pth")
    assert fn is None and "bad.pth" in reason


def _brute_auc(clean: np.ndarray, poisoned: np.ndarray) -> float:
    wins = [1.0 if p > c else 0.5 if p == c else 0.0 for p in poisoned for c in clean]
    return float(np.mean(wins))


@pytest.mark.parametrize("seed", range(4))
def test_auc_matches_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 10, 37).astype(float)  # many ties
    poisoned = rng.integers(3, 13, 23).astype(float)
    assert auc_score(clean, poisoned) == pytest.approx(_brute_auc(clean, poisoned))
    assert auc_score(clean, poisoned, higher_is_poisoned=False) == pytest.approx(_brute_auc(-clean, -poisoned))


def test_threshold_and_detection_metrics_hand_checked() -> None:
    clean = np.arange(1, 21, dtype=float)  # 1..20
    poisoned = np.array([25, 30, 19.5, 10, 40, 50, 60, 70, 80, 90, 5, 100, 110, 120, 130, 140, 150, 160, 170, 180.0])
    # fpr 0.05 of 20 clean → at most 1 flagged: threshold 19, only clean 20 is above it.
    assert threshold_at_fpr(clean, 0.05, higher_is_poisoned=True) == 19.0
    out = detection_metrics(clean, poisoned, fpr=0.05)
    # poisoned above 19: all but 10 and 5 → tp 18; fp 1; tn 19.
    assert out["threshold"] == 19.0 and out["fpr"] == 0.05
    assert out["recall"] == pytest.approx(18 / 20)
    assert out["acc"] == pytest.approx((18 + 19) / 40)
    precision = 18 / 19
    assert out["f1"] == pytest.approx(2 * precision * 0.9 / (precision + 0.9))
    assert out["auc"] == pytest.approx(_brute_auc(clean, poisoned))
    # lower-is-poisoned (STRIP entropy): mirror everything.
    low = detection_metrics(-clean, -poisoned, fpr=0.05, higher_is_poisoned=False)
    assert low["threshold"] == -19.0
    assert {k: low[k] for k in ("acc", "recall", "f1", "auc")} == pytest.approx(
        {k: out[k] for k in ("acc", "recall", "f1", "auc")}
    )
    # ties at the threshold are not flagged, so the realised fpr never exceeds the target.
    tied = np.array([1.0, 2.0, 2.0, 2.0])
    assert threshold_at_fpr(tied, 0.25) == 2.0
    assert detection_metrics(tied, np.array([3.0, 2.0, 2.0, 0.0]), fpr=0.25)["fpr"] == 0.0
    # fpr 1: everything clean is flagged.
    assert detection_metrics(clean, poisoned, fpr=1.0)["fpr"] == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors() -> None:
    pred, target = _random_maps(3)
    asr = target == 1
    ref = AttackMeter(5)
    ref.update(pred, target, asr, 2)
    meter = AttackMeter(5)
    meter.update(torch.from_numpy(pred).cuda(), torch.from_numpy(target).cuda(), torch.from_numpy(asr).cuda(), 2)
    assert meter.compute() == ref.compute()
