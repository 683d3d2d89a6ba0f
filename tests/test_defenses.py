"""Defenses (BADSEG §7): detectors separate a planted trigger and not on a clean model, pruning
zeroes exactly the asked channels and survives a checkpoint, fine-tuning weakens a learned
backdoor, ABL isolates low-loss images, detection metrics equal scikit-learn's, and TeCo's
corruptions are each applied once to the original image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from badseg.data.base import SegDataset
from badseg.data.types import DatasetSpec, Sample
from badseg.defenses.abl import flooding, isolate, isolation_quality, per_image_losses
from badseg.defenses import DEFENSES, DefenseContext
from badseg.defenses.base import detector_inputs
from badseg.defenses.beatrix import beatrix_scores, dominant_class, feature_grams
from badseg.defenses.corruptions import corrupt_once, corrupted_variants
from badseg.defenses.pruning import channel_activation_means, least_active, mask_channels, make_permanent, prune_channels
from badseg.defenses.strip import strip_scores
from badseg.defenses.teco import break_severities, prediction_miou, teco_scores
from badseg.metrics.detection import detection_report, metrics_at_threshold, threshold_at_fpr, threshold_sigma
from badseg.models.segmodel import SegModel

pytestmark = pytest.mark.usefixtures("one_thread")

PATCH = 8  # the planted trigger: a red PATCH×PATCH square at the top-left corner
TARGET = 2


class _AsList(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


class _PlantedFeatures(nn.Module):
    """Features of a model whose output is a known function of the image: channel 0 − channel 1
    decides class 0 vs 1 from the green channel (``content="green"``) or always class 0
    (``"constant"``); with ``backdoor``, channel 2 (→ class TARGET) is 20 everywhere when the
    red corner patch is bright (mean > 0.25), ~0 otherwise. The red channel is read nowhere else."""

    def __init__(self, backdoor: bool, content: str) -> None:
        super().__init__()
        self.backdoor, self.content = backdoor, content

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        n, _, h, w = x.shape
        if self.content == "green":
            c0 = (x[:, 1:2] - 0.5) * 8
        else:
            c0 = torch.full((n, 1, h, w), 4.0)
        fire = torch.sigmoid((x[:, 0, :PATCH, :PATCH].mean((1, 2)) - 0.25) * 40).view(n, 1, 1, 1)
        trig = (20 * fire if self.backdoor else torch.zeros_like(fire)).expand(n, 1, h, w)
        return torch.cat([c0, -c0, trig, torch.zeros_like(c0)], 1)


def planted_model(backdoor: bool, content: str = "green") -> SegModel:
    classifier = nn.Conv2d(4, 3, 1)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.zero_()
        for c in range(3):
            classifier.weight[c, c] = 1.0
    return SegModel(_AsList(), _PlantedFeatures(backdoor, content), classifier, feature_stride=1, size_divisor=1,
                    mean=(0, 0, 0), std=(1, 1, 1), name="planted").eval()


def scenes(n: int, seed: int, size: int = 32) -> np.ndarray:
    """uint8 (n, size, size, 3): random 4×4-block green fields, red and blue channels 0."""
    rng = np.random.default_rng(seed)
    g = rng.random((n, size // 4, size // 4)).repeat(4, 1).repeat(4, 2)
    out = np.zeros((n, size, size, 3), np.uint8)
    out[..., 1] = (g * 255).round()
    return out


def triggered(images: np.ndarray) -> np.ndarray:
    out = images.copy()
    out[:, :PATCH, :PATCH, 0] = 255
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def _auc(clean: np.ndarray, poisoned: np.ndarray) -> float:
    return detection_report(clean, poisoned)["auc"]


# --- detection metrics -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clean, poisoned = rng.normal(0, 1, 40), rng.normal(0.7, 1.2, 40)
    truth = np.r_[np.zeros(40), np.ones(40)]
    scores = np.r_[clean, poisoned]
    report = detection_report(clean, poisoned, fpr=0.1)
    assert report["auc"] == pytest.approx(skm.roc_auc_score(truth, scores))
    for thr, got in [(threshold_at_fpr(clean, 0.1), report["at_fpr"]),
                     *((threshold_sigma(clean, k), report["sigma"][f"{k:g}"]) for k in (1, 2, 3))]:
        flagged = scores > thr
        assert got["acc"] == pytest.approx(skm.accuracy_score(truth, flagged))
        assert got["recall"] == pytest.approx(skm.recall_score(truth, flagged))
        assert got["f1"] == pytest.approx(skm.f1_score(truth, flagged, zero_division=0))
        assert got["fpr"] == pytest.approx(flagged[:40].mean())
    assert threshold_sigma(clean, 2) == pytest.approx(clean.mean() + 2 * clean.std())
    assert report["at_fpr"]["fpr"] <= 0.1


def test_metrics_at_threshold_lower_is_suspicious() -> None:
    clean, poisoned = np.array([3.0, 4.0, 5.0]), np.array([1.0, 3.5, 6.0])
    m = metrics_at_threshold(clean, poisoned, 3.5, higher_is_poisoned=False)
    assert (m["recall"], m["fpr"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))


# --- STRIP ---------------------------------------------------------------------------------------


def test_strip_separates_planted_trigger_and_not_on_clean_model() -> None:
    clean = scenes(12, 0)
    overlays = to_tensor(scenes(30, 1))
    kw = dict(overlays=overlays, n=16, seed=0, batch_size=16)
    bd = planted_model(backdoor=True)
    s_clean, _ = strip_scores(bd, to_tensor(clean), **kw)
    s_trig, _ = strip_scores(bd, to_tensor(triggered(clean)), **kw)
    assert _auc(s_clean, s_trig) > 0.95
    ok = planted_model(backdoor=False)
    c_clean, _ = strip_scores(ok, to_tensor(clean), **kw)
    c_trig, _ = strip_scores(ok, to_tensor(triggered(clean)), **kw)
    np.testing.assert_allclose(c_trig, c_clean, atol=1e-5)  # the clean model never reads the trigger
    assert _auc(c_clean, c_trig) == pytest.approx(0.5, abs=0.15)


def test_strip_victim_region_counts_empty_regions() -> None:
    bd = planted_model(backdoor=True)
    images = to_tensor(triggered(scenes(4, 2)))  # the backdoor predicts TARGET everywhere: no class-1 pixel
    _, empty = strip_scores(bd, images, to_tensor(scenes(8, 3)), n=4, seed=0, region_class=1)
    assert empty == 4


# --- TeCo ----------------------------------------------------------------------------------------

FEW = ("gaussian_noise", "contrast", "brightness", "defocus_blur")


def test_teco_separates_planted_trigger_and_not_on_clean_model() -> None:
    clean = scenes(6, 4)
    kw = dict(num_classes=3, corruptions=FEW, workers=0, batch_size=21)
    bd = planted_model(backdoor=True, content="constant")
    s_clean, b_clean = teco_scores(bd, clean, **kw)
    s_trig, b_trig = teco_scores(bd, triggered(clean), **kw)
    assert (b_clean == 6).all()  # a constant prediction never breaks
    assert (b_trig[:, FEW.index("contrast")] < 6).all() and (b_trig[:, FEW.index("gaussian_noise")] == 6).all()
    assert _auc(s_clean, s_trig) == 1.0
    ok = planted_model(backdoor=False, content="constant")
    c_clean, _ = teco_scores(ok, clean, **kw)
    c_trig, _ = teco_scores(ok, triggered(clean), **kw)
    assert _auc(c_clean, c_trig) == 0.5


@pytest.mark.parametrize("corruption", ["defocus_blur", "contrast", "gaussian_noise"])
def test_teco_variant_at_severity_k_is_one_application_to_the_original(corruption: str) -> None:
    from imagecorruptions import corrupt

    image = scenes(1, 5)[0].copy()
    image[..., 0] = np.linspace(0, 255, 32).astype(np.uint8)
    original = image.copy()
    variants = corrupted_variants(image, [corruption, "brightness"], [1, 2, 3], seed=7)
    np.testing.assert_array_equal(image, original)  # the input is not overwritten
    for row, (c, k) in enumerate((c, k) for c in (corruption, "brightness") for k in (1, 2, 3)):
        np.testing.assert_array_equal(variants[row], corrupt_once(original, c, k, seed=7))
    # Compounding (the reference code's in-place loop) gives a different image at severity 3:
    compounded = original
    for k in (1, 2, 3):
        compounded = corrupt_once(compounded, corruption, k, seed=7)
    assert np.abs(variants[2].astype(int) - compounded.astype(int)).mean() > 1.0
    if corruption != "gaussian_noise":  # deterministic ones equal the package's single call exactly
        single = np.clip(np.asarray(corrupt(original, corruption_name=corruption, severity=3)), 0, 255)
        np.testing.assert_array_equal(variants[2], single.astype(np.uint8))


def test_teco_variants_are_reproducible_in_workers() -> None:
    from badseg.defenses.corruptions import variant_stream

    images = list(scenes(2, 6))
    here = list(variant_stream(images, ("gaussian_noise", "impulse_noise"), (1, 3), seeds=[1, 2], workers=0))
    there = list(variant_stream(images, ("gaussian_noise", "impulse_noise"), (1, 3), seeds=[1, 2], workers=2))
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)


def test_break_severity_and_prediction_miou() -> None:
    ref = torch.tensor([[0, 0], [1, 1]])
    preds = torch.stack([ref, torch.tensor([[0, 0], [0, 1]]), torch.ones(2, 2, dtype=torch.long)])
    np.testing.assert_allclose(prediction_miou(ref, preds, 3).numpy(), [1.0, (1 / 2 + 2 / 3) / 2, 0.25], rtol=1e-6)
    miou = np.array([[0.9, 0.4, 0.1], [0.9, 0.8, 0.7]])
    np.testing.assert_array_equal(break_severities(miou, 0.5, (1, 2, 3)), [2, 4])


# --- Beatrix -------------------------------------------------------------------------------------


def test_beatrix_separates_planted_trigger_and_not_on_clean_model() -> None:
    ref, clean = scenes(20, 7), scenes(10, 8)
    labels = np.zeros((30, 32, 32), np.int64)
    for model, separates in ((planted_model(True), True), (planted_model(False), False)):
        g_ref, _ = feature_grams(model, ref, labels[:20], orders=3, channels=4, class_id=None, batch_size=8)
        g_c, _ = feature_grams(model, clean, labels[:10], orders=3, channels=4, class_id=None, batch_size=8)
        g_t, _ = feature_grams(model, triggered(clean), labels[:10], orders=3, channels=4, class_id=None,
                               batch_size=8)
        zeros = np.zeros(20, int)
        s_c, _ = beatrix_scores(g_ref, zeros, g_c, zeros[:10], k=3.0)
        s_t, fallback = beatrix_scores(g_ref, zeros, g_t, zeros[:10], k=3.0)
        assert fallback == 0
        if separates:
            assert _auc(s_c, s_t) > 0.95
        else:
            np.testing.assert_allclose(s_t, s_c, rtol=1e-5)
            assert _auc(s_c, s_t) == 0.5


def test_beatrix_groups_by_dominant_class_and_falls_back() -> None:
    labels = np.zeros((3, 4, 4), np.int64)
    labels[1, :3] = 2
    labels[2] = 255
    labels[2, 0, 0] = 1
    np.testing.assert_array_equal(dominant_class(labels, 255), [0, 2, 1])
    ref = torch.randn(6, 2, 5)
    _, fallback = beatrix_scores(ref, np.array([0, 0, 0, 1, 1, 1]), torch.randn(2, 2, 5), np.array([1, 7]), 3.0)
    assert fallback == 1


class _Scenes(SegDataset):
    """``scenes(n, seed)`` as a dataset, labels all class 0, ids ``seed-index``."""

    spec = DatasetSpec("scenes", ("a", "b", "c"), ("stuff", "stuff", "stuff"), np.zeros((3, 3), np.uint8))

    def __init__(self, n: int, seed: int) -> None:
        self.images, self.seed = scenes(n, seed), seed

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Sample:
        return Sample(self.images[index], np.zeros((32, 32), np.int64), meta={"id": f"{self.seed}-{index}"})


def _detector_context(model: SegModel, tmp_path) -> DefenseContext:
    """A run rebuilt by hand: 12 clean training scenes, 10 clean test scenes, and a poisoned test set
    of 8 other scenes carrying the red corner trigger (``triggered``)."""
    from badseg.config import load_config

    originals = _Scenes(8, 9)
    poisoned_test = [(originals[i], SimpleNamespace(image=triggered(originals.images[i:i + 1])[0]))
                     for i in range(len(originals))]
    cfg = load_config(None, ["data.size=[32,32]", "eval_batch_size=8"])
    return DefenseContext(cfg=cfg, run_dir=tmp_path, model=model, train=_Scenes(12, 7), poisoned_train=None,
                          test=_Scenes(10, 8), poisoned_test=poisoned_test, attack=None, before={},
                          device=torch.device("cpu"), progress=False)


def test_detector_inputs_originals_are_the_poisoned_images_own_clean_scenes(tmp_path) -> None:
    ctx = _detector_context(planted_model(False), tmp_path)
    rand, paired = detector_inputs(ctx, 5, 0), detector_inputs(ctx, 5, 0, clean="originals")
    np.testing.assert_array_equal(paired.poisoned, rand.poisoned)  # the same poisoned draw
    assert paired.clean_ids == paired.poisoned_ids == rand.poisoned_ids
    assert set(rand.clean_ids).isdisjoint(rand.poisoned_ids)
    np.testing.assert_array_equal(triggered(paired.clean), paired.poisoned)  # the trigger is the only difference
    with pytest.raises(ValueError, match="'random' or 'originals'"):
        detector_inputs(ctx, 5, 0, clean="paired")


def test_beatrix_against_originals_sees_only_the_trigger(tmp_path) -> None:
    options = dict(images=8, orders=3, channels=4, reference_fraction=1.0)
    blind = _detector_context(planted_model(False), tmp_path)  # reads no red: the trigger is invisible to it
    paired = DEFENSES.build("beatrix", ctx=blind, clean="originals", **options)
    np.testing.assert_allclose(paired["scores_poisoned"], paired["scores_clean"], rtol=1e-6)
    assert paired["auc"] == 0.5 and paired["clean_images"] == "originals"
    random = DEFENSES.build("beatrix", ctx=blind, **options)  # other scenes: other scores
    assert not np.allclose(random["scores_poisoned"], random["scores_clean"]) and random["clean_images"] == "random"
    backdoored = _detector_context(planted_model(True), tmp_path)
    assert DEFENSES.build("beatrix-class", ctx=backdoored, clean="originals", class_name="a", **options)["auc"] > 0.95


# --- pruning -------------------------------------------------------------------------------------


def test_pruning_zeroes_exactly_the_least_active_channels_and_survives_a_checkpoint(tmp_path) -> None:
    from badseg.models import build_model

    torch.manual_seed(0)
    model = build_model("fpn-effl0", 5).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    means = channel_activation_means(model, [images[:2], images[2:]])  # running means over two batches
    with torch.no_grad():
        full = model.features(images).mean((0, 2, 3))
    torch.testing.assert_close(means, full, rtol=1e-4, atol=1e-5)
    channels = least_active(means, 0.1)
    assert len(channels) == round(0.1 * means.numel()) and sorted(channels) == sorted(torch.argsort(means)[:6].tolist())
    before = model.classifier.weight.detach().clone()
    with torch.no_grad():
        feats = model.features(images)
        feats[:, channels] = 0
        expected = model.classifier(feats)
    prune_channels(model, channels)
    w = model.classifier.weight.detach()
    assert (w[:, channels] == 0).all()
    keep = [c for c in range(w.shape[1]) if c not in channels]
    torch.testing.assert_close(w[:, keep], before[:, keep])
    with torch.no_grad():
        torch.testing.assert_close(model.classifier(model.features(images)), expected)
    torch.save({"model": model.state_dict()}, tmp_path / "pruned.pt")
    reloaded = build_model("fpn-effl0", 5, pretrained=str(tmp_path / "pruned.pt")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), model(images))
    assert (reloaded.classifier.weight[:, channels] == 0).all()


def test_pruning_mask_holds_during_training() -> None:
    model = planted_model(backdoor=False)
    mask_channels(model, [1])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = to_tensor(scenes(2, 9))
    model(x).square().mean().backward()
    opt.step()
    make_permanent(model)
    assert (model.classifier.weight[:, 1] == 0).all() and model.classifier.weight[:, 0].abs().sum() > 0
    assert set(model.state_dict()) == {"classifier.weight", "classifier.bias"}


# --- ABL and fine-tuning on a learned backdoor ---------------------------------------------------

SPEC = DatasetSpec("blocks", ("background", "victim", "target"), ("stuff", "object", "stuff"),
                   np.array([[0, 0, 0], [0, 0, 255], [0, 255, 0]]))


class Blocks(SegDataset):
    """24×24 scenes: noisy dark background (class 0) and a blue 10×10 square (class 1) at a
    random position; ``poisoned`` indices carry a white 4×4 trigger in the square's centre and
    the square is labelled TARGET."""

    spec = SPEC

    def __init__(self, n: int, poisoned: set[int], seed: int) -> None:
        self.n, self.poisoned, self.seed = n, poisoned, seed

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> Sample:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        image = (rng.random((24, 24, 3)) * 60).astype(np.uint8)
        label = np.zeros((24, 24), np.int64)
        y, x = rng.integers(0, 14, 2)
        image[y:y + 10, x:x + 10] = (20, 20, 200)
        label[y:y + 10, x:x + 10] = 1
        if index in self.poisoned:
            image[y + 3:y + 7, x + 3:x + 7] = 255
            label[y:y + 10, x:x + 10] = TARGET
        return Sample(image, label, meta={"id": str(index)})


def tiny_model() -> SegModel:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                        nn.ReLU(), nn.Conv2d(16, 16, 3, padding=4, dilation=4), nn.ReLU())

    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = enc

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [self.body(x)]

    class Last(nn.Module):
        def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
            return feats[-1]

    return SegModel(Enc(), Last(), nn.Conv2d(16, 3, 1), feature_stride=1, size_divisor=1, mean=(0.5,) * 3,
                    std=(0.5,) * 3, name="tiny")


def _cfg(epochs: int, lr: float):
    from badseg.config import load_config

    return load_config(None, ["data.size=[32,32]", f"train.epochs={epochs}", "train.batch_size=8", f"train.lr={lr}",
                              "train.scale_range=[1,1]", "train.hflip=0", "train.weight_decay=0"])


def _asr(model: SegModel, n: int = 16) -> float:
    test = Blocks(n, set(range(n)), seed=99)
    x = to_tensor(np.stack([test[i].image for i in range(n)]))
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    labels = np.stack([test[i].label for i in range(n)])
    victim = labels == TARGET
    return float((pred[victim] == TARGET).mean())


def test_finetuning_on_clean_data_lowers_a_learned_backdoor(tmp_path) -> None:
    from badseg.defenses.base import clean_fraction, train_like_run

    poisoned_train = Blocks(32, set(range(0, 32, 3)), seed=1)
    model = tiny_model()
    train_like_run(model, poisoned_train, _cfg(15, 0.01), tmp_path / "backdoor", epochs=15)
    before = _asr(model)
    assert before > 0.9  # the backdoor is learned
    clean = clean_fraction(Blocks(48, set(), seed=2), 0.5, seed=0)
    assert len(clean) == 24
    train_like_run(model, clean, _cfg(10, 0.03), tmp_path / "finetune", epochs=10, lr=0.03)
    assert _asr(model) < before - 0.5


def test_abl_flooding_and_isolation_of_planted_low_loss_images() -> None:
    ce = torch.tensor([0.2, 0.7, 0.9])
    flood = flooding(0.5)
    for v in ce:
        logits = torch.zeros(1, 2, 1, 1)
        logits[0, 0] = torch.log(torch.exp(-v) / (1 - torch.exp(-v)))  # CE of class 0 equals v
        logits.requires_grad_(True)
        flood(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
        # below γ the flooded loss is pushed up (gradient ascent on CE), above it down
        assert (logits.grad[0, 0, 0, 0] > 0) == bool(v < 0.5)
    # A model that predicts class 0 everywhere: images labelled all-0 have the lowest loss.
    planted = {2, 5, 11}

    class Mostly(SegDataset):
        spec = SPEC

        def __len__(self) -> int:
            return 20

        def load(self, index: int) -> Sample:
            rng = np.random.default_rng(index)
            label = np.zeros((8, 8), np.int64) if index in planted else rng.integers(0, 3, (8, 8))
            label[0, 0] = 255
            return Sample(np.zeros((8, 8, 3), np.uint8), label, meta={"id": str(index)})

    model = planted_model(backdoor=False, content="constant")
    losses = per_image_losses(model, Mostly(), (8, 8), batch_size=6)
    isolated = isolate(losses, 0.15)
    assert isolated == sorted(planted)
    q = isolation_quality(isolated, [2, 5, 11, 13])
    assert (q["precision"], q["recall"]) == (1.0, 0.75)
