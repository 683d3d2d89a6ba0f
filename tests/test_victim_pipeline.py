"""The victim's pipeline (issue 19): mmseg-style crops keep image, label and ASR region together
and copy stamps unresampled at scale 1; ``cat_max_ratio`` re-draws; sliding-window inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from badseg.attacks import build_attack
from badseg.attacks.base import Poisoned
from badseg.build import eval_transform, train_transform
from badseg.config import DataConfig, RunConfig, TrainConfig
from badseg.data.types import IGNORE_INDEX, Sample
from badseg.evaluate import evaluate
from badseg.stages.auto import search_size
from badseg.stages.relaxed import build_search_set, search_space
from badseg.train.augment import AugmentConfig, SegTorchDataset, augment, crop_is_varied
from badseg.train.infer import SlideWindow, window_starts
from badseg.triggers import TriggerSpec

H, W = 90, 120  # rows, cols < 256: a pixel's coordinates fit its first two channels
TARGET = 7


def _coded_sample(seed: int = 0) -> tuple[Sample, np.ndarray, np.ndarray]:
    """(poisoned sample, its ASR mask, its stamp mask): channels 0/1 hold each pixel's row/column,
    channel 2 a random stamp inside a box and 0 outside; the label is 1, or ``TARGET`` on an
    irregular ASR region that overlaps the stamp."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:H, :W]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=2).astype(np.uint8)
    stamp = np.zeros((H, W), bool)
    stamp[30:46, 50:70] = True
    image[..., 2][stamp] = rng.integers(1, 256, int(stamp.sum()))
    asr = ((rows - 40) ** 2 / 400 + (cols - 60) ** 2 / 900 < 1) & (rng.random((H, W)) < 0.8)
    label = np.where(asr, TARGET, 1).astype(np.int64)
    return Sample(image, label, meta={"id": "coded"}), asr, stamp


def _crop_pipeline(**train) -> tuple[tuple[int, int] | None, AugmentConfig]:
    return train_transform(TrainConfig(pipeline="crop", **train), DataConfig(size=(48, 64)))


def test_crop_pipeline_keeps_image_label_and_asr_region_aligned_and_stamps_unresampled() -> None:
    sample, asr, stamp = _coded_sample()
    size, aug = _crop_pipeline(scale_range=(1.0, 1.0), cat_max_ratio=1.0)
    assert size is None and aug.crop_size == (48, 64)  # kept at the files' resolution, cropped to data.size
    data = SegTorchDataset([sample] * 24, size=size, augment=aug, seed=1)
    origins, flips = set(), 0
    for i in range(len(data)):
        x, lab = data[i]
        assert x.shape == (3, 48, 64) and lab.shape == (48, 64)
        img = torch.round(x * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        r, c = img[..., 0].astype(int), img[..., 1].astype(int)
        assert np.array_equal(img, sample.image[r, c])  # every pixel, stamp included, copied byte-exact
        assert np.array_equal(lab.numpy() == TARGET, asr[r, c])  # the label's ASR region moved with it
        assert np.array_equal(img[..., 2] > 0, stamp[r, c])
        assert (np.diff(r, axis=0) == 1).all() and (np.abs(np.diff(c, axis=1)) == 1).all()  # one contiguous crop
        origins.add((r.min(), c.min()))
        flips += int(c[0, 1] < c[0, 0])
    assert len(origins) > 10 and 0 < flips < len(data)  # the crops are random and some are flipped


def test_crop_pipeline_rescales_image_and_label_together() -> None:
    sample, asr, _ = _coded_sample()
    size, aug = _crop_pipeline(scale_range=(0.6, 1.8), cat_max_ratio=1.0)
    data = SegTorchDataset([sample] * 12, size=size, augment=aug, seed=2)
    for i in range(len(data)):
        x, lab = data[i]
        img = (x * 255).permute(1, 2, 0).numpy()
        inside = lab.numpy() != IGNORE_INDEX
        inside[:3], inside[-3:], inside[:, :3], inside[:, -3:] = False, False, False, False  # away from pad edges
        r, c = np.rint(img[..., 0]).astype(int), np.rint(img[..., 1]).astype(int)
        # a bilinear image and a nearest-neighbour label of one rescale: the label's region is where
        # the image says each pixel came from, up to the one source pixel nearest-neighbour rounds to
        near = np.zeros((H, W), bool)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                near |= np.roll(asr, (dr, dc), axis=(0, 1))
        assert near[r, c][inside & (lab.numpy() == TARGET)].all()


def test_crop_is_varied_counts_labelled_pixels_only() -> None:
    assert crop_is_varied(np.array([[0, 0, 1] + [IGNORE_INDEX] * 9]), 0.75)  # ignore dominates: not counted
    assert not crop_is_varied(np.array([[0, 0, 0, 1]]), 0.75)  # 0 covers exactly 0.75: not below it
    assert not crop_is_varied(np.array([[3, 3, IGNORE_INDEX]]), 0.99)  # a single class never passes
    assert not crop_is_varied(np.full((4, 4), IGNORE_INDEX), 0.75)  # nor a crop of padding only


def test_cat_max_ratio_redraws_crops_where_one_class_dominates() -> None:
    """Class 1 fills the left 30 of 100 columns: a 40-wide crop passes cat_max_ratio 0.75 only
    when it starts in columns 1–19 (19 of 61 origins), so a single draw passes ~31 % of the time
    and eleven draws (the first and 10 re-draws) ~98 %."""
    label = np.zeros((32, 100), np.int64)
    label[:, :30] = 1
    image = np.zeros((32, 100, 3), np.uint8)

    def passing(ratio: float) -> float:
        cfg = AugmentConfig((1.0, 1.0), (32, 40), 0.0, ratio)
        return np.mean([crop_is_varied(augment(image, label, cfg, np.random.default_rng(s))[1], 0.75)
                        for s in range(300)])

    assert passing(1.0) < 0.45
    assert passing(0.75) > 0.93
    uniform = np.zeros((32, 100), np.int64)  # no crop can pass: still one crop after the last re-draw
    img, lab = augment(image, uniform, AugmentConfig((1.0, 1.0), (32, 40), 0.0, 0.75), np.random.default_rng(0))
    assert lab.shape == (32, 40)


def test_cat_max_ratio_in_the_search_augmentation_judges_the_label() -> None:
    from badseg.stages.learnable import augment_batch

    label = torch.zeros(64, 32, 100, dtype=torch.int64)
    label[:, :, :30] = 1
    image = label[:, None].float().expand(-1, 3, -1, -1)

    def passing(ratio: float) -> float:
        _, (lab,) = augment_batch(image, [label], AugmentConfig((1.0, 1.0), (32, 40), 0.0, ratio),
                                  torch.Generator().manual_seed(0))
        return np.mean([crop_is_varied(m, 0.75) for m in lab])

    assert passing(1.0) < 0.5 and passing(0.75) > 0.9


def test_window_starts_follow_mmseg_slide_grid() -> None:
    assert window_starts(7, 4, 2) == [0, 2, 3]  # the last window moved back to end at the border
    assert window_starts(8, 4, 2) == [0, 2, 4]
    assert window_starts(4, 4, 3) == [0]
    assert window_starts(3, 4, 2) == [0]  # shorter than the window: one window of the whole side


class _Conv(nn.Module):
    """A small conv net with a 5×5 receptive field (its output depends on context)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_slide_equals_whole_image_inference_where_the_window_covers_the_image() -> None:
    model = _Conv().eval()
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        whole = model(x)
        for window in ((20, 28), (24, 32), (20, 40)):
            assert torch.equal(SlideWindow(window, (5, 7)).logits(model, x), whole)
        assert not torch.allclose(SlideWindow((12, 16), (6, 8)).logits(model, x), whole)  # context matters here


def test_slide_with_overlaps_averages_the_windows_that_cover_each_pixel() -> None:
    """Hand computation on a 4×7 image, 4×4 windows every 2 columns: windows at columns 0, 2, 3."""

    class WindowMean(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, *x.shape[2:])

    x = torch.rand(1, 3, 4, 7, dtype=torch.float64)
    m0, m1, m2 = (x[..., a : a + 4].mean() for a in (0, 2, 3))
    want = torch.stack([m0, m0, (m0 + m1) / 2, (m0 + m1 + m2) / 3, (m1 + m2) / 2, (m1 + m2) / 2, m2])
    got = SlideWindow((4, 4), (4, 2)).logits(WindowMean(), x)
    assert got.shape == (1, 1, 4, 7)
    assert torch.allclose(got[0, 0], want.expand(4, 7))

    conv = nn.Conv2d(3, 5, 1).double()  # a 1×1 conv: every window gives each pixel its own logits
    with torch.no_grad():
        y = torch.rand(2, 3, 11, 13, dtype=torch.float64)
        assert torch.allclose(SlideWindow((4, 6), (3, 4)).logits(conv, y), conv(y))


class _Spec:
    num_classes, ignore_index = 8, IGNORE_INDEX


class _Clean(list):
    spec = _Spec()


class _PoisonedSet:
    """The items ``evaluate`` reads from a ``PoisonedTestSet``."""

    def __init__(self, items: list[tuple[Sample, Poisoned]]) -> None:
        self.items, self.indices = items, list(range(len(items)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Sample, Poisoned]:
        return self.items[k]


class _ReadsChannel0(nn.Module):
    """A 1×1 rule: ``TARGET`` where channel 0 is bright, class 1 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 8, *x.shape[2:])
        out[:, TARGET] = x[:, 0] - 0.5
        out[:, 1] = 0.5 - x[:, 0]
        return out


def test_evaluate_with_slide_keeps_the_asr_mask_on_the_pixels_it_marks() -> None:
    """The poisoned image is bright exactly on an irregular ASR region: a model reading that
    brightness reaches ASR 1 and PBA 1 only if predictions and masks stay aligned through the
    windows (any shift or flip costs ASR)."""
    rng = np.random.default_rng(0)
    items, clean = [], _Clean()
    for i in range(3):
        asr = rng.random((45, 61)) < 0.3
        image = np.zeros((45, 61, 3), np.uint8)
        label = np.ones((45, 61), np.int64)
        poisoned = image.copy()
        poisoned[asr, 0] = 255
        sample = Sample(image, label, meta={"id": str(i)})
        clean.append(sample)
        items.append((sample, Poisoned(poisoned, np.where(asr, TARGET, label), asr, asr, None, {})))
    test = _PoisonedSet(items)
    slide = SlideWindow((16, 24), (8, 12))
    m = evaluate(_ReadsChannel0(), clean, test, None, TARGET, batch_size=2, progress=False, slide=slide)
    assert m.asr == 1.0 and m.pba == 1.0 and m.n_asr_pixels == sum(int(p.asr_mask.sum()) for _, p in items)
    assert m.stealth == {}
    shifted = [(s, Poisoned(p.image, p.label, np.roll(p.asr_mask, 1, axis=1), p.trigger_mask, None, {}))
               for s, p in items]
    assert evaluate(_ReadsChannel0(), clean, _PoisonedSet(shifted), None, TARGET, progress=False,
                    slide=slide).asr < 0.5  # the test can fail: a mask one pixel off loses most hits


def test_eval_transform_by_config() -> None:
    whole = RunConfig()
    assert eval_transform(whole) == (tuple(whole.data.size), None)
    slide = RunConfig.model_validate({"data": {"size": [64, 96], "native_size": [128, 192]},
                                      "train": {"pipeline": "crop", "crop_size": [48, 64]},
                                      "test": {"inference": "slide"}})
    assert eval_transform(slide) == ((128, 192), SlideWindow((48, 64), (32, 42)))


@pytest.mark.usefixtures("one_thread")
def test_stage2_searches_at_native_resolution_under_the_crop_pipeline(synthetic) -> None:
    """Under ``train.pipeline: crop`` the search set holds the native images unresampled, so the
    stealth budget's PSNR compares the pixels the results' PSNR compares."""
    attack = build_attack("o2b", synthetic.spec, "car", "road", TriggerSpec(size=0.3, intensity=0.8))
    native = synthetic[0].label.shape
    crop = RunConfig.model_validate({"data": {"size": [32, 64]}, "train": {"pipeline": "crop"}})
    assert search_size(RunConfig.model_validate({"data": {"size": [32, 64]}}), synthetic) == (32, 64)
    assert search_size(crop, synthetic) == native
    data = build_search_set(synthetic, attack, search_space(attack), search_size(crop, synthetic), seed=0, limit=3)
    ids = [i for i in range(len(synthetic)) if synthetic[i].id in data.ids]
    for k, i in enumerate(ids):
        got = torch.round(data.images[k] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(got, synthetic[i].image)


def test_a_run_states_its_pipeline_and_measures_at_the_slide_resolution(tmp_path, one_thread) -> None:
    """A tiny synthetic run under ``crop`` + ``slide``: metrics.json and report.md state the
    pipeline, ASR is counted at ``data.native_size`` (4× the pixels of ``data.size`` here), and
    ``badseg eval`` reproduces the run's figures through the same inference."""
    import json

    from badseg.config import load_config
    from badseg.pipeline import run_experiment
    from badseg.reevaluate import reevaluate

    tiny = ["data.size=[32,64]", "data.train_length=8", "data.test_length=4", "model.name=deeplabv3plus-mbv2",
            "train.epochs=1", "train.batch_size=4", "eval_batch_size=4", "workers=1", "figure_samples=1",
            "attack.rate=0.5", "trigger.size=0.3"]
    crop = [*tiny, "train.pipeline=crop", "data.native_size=[64,128]", "test.inference=slide", "test.stride=[16,32]"]
    quiet = {"progress": False, "log": lambda *_: None}
    m = run_experiment(load_config(None, crop), tmp_path / "crop", **quiet)
    assert m["pipeline"] == {"train": "crop", "train_size": [64, 128], "scale_range": [0.75, 1.5],
                             "crop_size": [32, 64], "hflip": 0.5, "cat_max_ratio": 0.75, "inference": "slide",
                             "test_size": [64, 128], "window": [32, 64], "stride": [16, 32]}
    assert json.loads((tmp_path / "crop" / "metrics.json").read_text())["pipeline"] == m["pipeline"]
    report = (tmp_path / "crop" / "report.md").read_text()
    assert "training pipeline `crop`" in report and "sliding 32×64 windows, stride 16×32, at 64×128" in report
    whole = run_experiment(load_config(None, tiny), tmp_path / "whole", **quiet)
    assert whole["pipeline"]["train"] == "resize" and whole["pipeline"]["test_size"] == [32, 64]
    assert 3.0 < m["n_asr_pixels"] / whole["n_asr_pixels"] < 5.0
    again = reevaluate(tmp_path / "crop", [], **quiet)
    assert all(again[k] == m[k] for k in ("asr", "pba", "cba", "n_asr_pixels")) and again["pipeline"] == m["pipeline"]
