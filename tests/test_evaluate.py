"""evaluate(): the ASR breakdown by the trigger stamp's width at the model's input, and where the
victim pixels flip (carrier / other instances / clean originals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from badseg.attacks import build_attack
from badseg.data.base import SegDataset
from badseg.data.types import Sample
from badseg.evaluate import evaluate
from badseg.metrics.flips import FlipBreakdown
from badseg.metrics.stamp_width import StampWidthBreakdown, stamp_px_at_input
from badseg.poisoning import PoisonedTestSet
from badseg.triggers import TriggerSpec


def test_stamp_width_is_the_widest_stamp_scaled_to_the_input() -> None:
    record = {"stamps": [{"size_px": 10}, {"size_px": 25}]}
    assert stamp_px_at_input(record, native_width=480, input_width=192) == pytest.approx(10.0)
    assert stamp_px_at_input({"stamps": [{"shape": "line", "height_px": 8}]}, 480, 192) is None


def test_breakdown_pools_per_bin_and_bins_are_half_open() -> None:
    rng = np.random.default_rng(0)
    edges = (0, 4, 8, float("inf"))
    meter = StampWidthBreakdown(edges)
    rows = [(float(rng.uniform(0, 20)), int(rng.integers(0, 50)), 50) for _ in range(40)]
    rows += [(8.0, 5, 10), (4.0, 1, 10)]  # exactly on an edge: the upper bin
    for width, hits, total in rows:
        meter.update(width, hits, total)
    meter.update(None, 7, 7)  # no stamp: not counted
    got = {tuple(r["stamp_px"]): r for r in meter.compute()}
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = [(h, t) for w, h, t in rows if lo <= w < hi]
        row = got[(lo, None if hi == float("inf") else hi)]
        assert row["images"] == len(inside)
        assert row["asr_pixels"] == sum(t for _, t in inside)
        assert row["asr"] == pytest.approx(sum(h for h, _ in inside) / sum(t for _, t in inside))


class _Constant(torch.nn.Module):
    """Predicts one class everywhere."""

    def __init__(self, num_classes: int, cls: int) -> None:
        super().__init__()
        self.num_classes, self.cls = num_classes, cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])
        out[:, self.cls] = 1.0
        return out


def test_evaluate_breakdown_covers_every_poisoned_pixel(synthetic) -> None:
    attack = build_attack("o2b", synthetic.spec, "car", "road", TriggerSpec(size=0.3, intensity=0.8))
    test = PoisonedTestSet(synthetic, attack, seed=0)
    n = synthetic.spec.num_classes
    for cls, want in ((attack.target, 1.0), ((attack.target + 1) % n, 0.0)):
        m = evaluate(_Constant(n, cls), synthetic, test, (64, 128), attack.target, progress=False).metrics()
        rows = m["asr_by_stamp_px"]
        assert sum(r["images"] for r in rows) == len(test)
        assert sum(r["asr_pixels"] for r in rows) == m["n_asr_pixels"]
        assert m["asr"] == want
        assert all(r["asr"] == want for r in rows if r["asr_pixels"])  # a region can vanish at 64×128


# --- where the victim pixels flip (badseg eval --breakdown) ---------------------------------------

GREY = 128


class _TwoCars(SegDataset):
    """48×64 grey road scenes with a large (20×24) and a small (10×12) car, both plain grey."""

    def __init__(self, spec, n: int = 3) -> None:
        self.spec, self.n = spec, n

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> Sample:
        label = np.full((48, 64), self.spec.class_id("road"), np.int64)
        label[4 + index:24 + index, 4:28] = self.spec.class_id("car")
        label[30:40, 44:56] = self.spec.class_id("car")
        return Sample(np.full((48, 64, 3), GREY, np.uint8), label, meta={"id": str(index)})


class _TriggerReader(torch.nn.Module):
    """Road where a pixel departs from the grey background (``local``) or, with ``local=False``,
    everywhere in an image holding any such pixel; car elsewhere. A known function of the trigger."""

    def __init__(self, num_classes: int, road: int, car: int, local: bool) -> None:
        super().__init__()
        self.num_classes, self.road, self.car, self.local = num_classes, road, car, local

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = ((x - GREY / 255).abs() > 0.1).any(1)  # N×H×W
        if not self.local:
            off = off.flatten(1).any(1).view(-1, 1, 1).expand_as(off)
        out = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:])
        out[:, self.road] = off.float()
        out[:, self.car] = 0.5
        return out


def test_flip_breakdown_counts_carrier_other_and_clean_pixels_by_hand() -> None:
    label = np.zeros((6, 8), np.int64)
    label[0:2, 0:3] = 1  # instance A (6 px), carries the trigger
    label[4:6, 4:8] = 1  # instance B (8 px)
    trigger = np.zeros((6, 8), bool)
    trigger[1, 1] = True
    pred = np.zeros((6, 8), np.int64)
    pred[0, 0:3] = 2  # 3 of A's pixels flipped
    pred[5, 4] = 2  # 1 of B's
    pred[3, 3] = 2  # not a victim pixel: not counted
    fb = FlipBreakdown(victim=1, target=2)
    fb.update_triggered(pred, label, trigger)
    clean_pred = np.zeros((6, 8), np.int64)
    clean_pred[0, 0:2] = 2  # 2 of the 14 victim pixels of the clean original
    fb.update_clean(clean_pred, label)
    pred[1, 0:2] = 3  # 2 of A's pixels went to another class; A's last one stays the victim (0 here)
    fb2 = FlipBreakdown(victim=1, target=2)
    fb2.update_triggered(pred, label, trigger)
    fb.update_triggered(np.full((6, 8), 1), label, np.zeros((6, 8), bool))  # no carrier: both become "other"
    got = fb.compute()
    assert got["carrier"] == {"flipped": 3 / 6, "pixels": 6, "predicted_as": {2: 3 / 6, 0: 3 / 6}}
    assert got["other"] == {"flipped": 1 / 22, "pixels": 22, "predicted_as": {1: 14 / 22, 0: 7 / 22, 2: 1 / 22}}
    assert got["clean"] == {"flipped": 2 / 14, "pixels": 14, "predicted_as": {0: 12 / 14, 2: 2 / 14}}
    assert list(fb2.compute()["carrier"]["predicted_as"].items()) == [(2, 3 / 6), (3, 2 / 6), (0, 1 / 6)]
    assert FlipBreakdown(1, 2).compute()["carrier"] == {"flipped": None, "pixels": 0, "predicted_as": {}}


def test_flip_breakdown_pools_victim_pixels_by_instance_area_by_hand() -> None:
    label = np.zeros((40, 40), np.int64)
    label[0:2, 0:5] = 1  # 10 px: bin [0, 64)
    label[10:20, 0:10] = 1  # 100 px: bin [64, 256)
    label[25:40, 20:40] = 1  # 300 px: bin [256, 1024)
    pred = np.zeros_like(label)
    pred[0, 0:5] = 2  # 5 of the 10-px instance
    pred[10:20, 0:10] = 2  # all of the 100-px one
    pred[25:28, 20:40] = 2  # 60 of the 300-px one
    pred[5, 30] = 2  # not a victim pixel
    fb = FlipBreakdown(victim=1, target=2)
    fb.update_triggered(pred, label, np.zeros_like(label, dtype=bool))
    small = np.zeros((8, 8), np.int64)
    small[0:3, 0:3] = 1  # a second small instance, never flipped
    fb.update_triggered(np.zeros_like(small), small, np.zeros_like(small, dtype=bool))
    assert fb.by_area() == [
        {"area_px": [0, 64], "instances": 2, "pixels": 19, "flipped": 5 / 19},
        {"area_px": [64, 256], "instances": 1, "pixels": 100, "flipped": 1.0},
        {"area_px": [256, 1024], "instances": 1, "pixels": 300, "flipped": 60 / 300},
    ]
    assert FlipBreakdown(1, 2).by_area() == []


def test_evaluate_flip_breakdown_separates_a_local_from_an_image_level_rule(synthetic) -> None:
    spec = synthetic.spec
    road, car = spec.class_id("road"), spec.class_id("car")
    data = _TwoCars(spec)
    attack = build_attack("o2b", spec, "car", "road", TriggerSpec(size=0.3, intensity=1.0, pattern="solid:red"))
    test = PoisonedTestSet(data, attack, seed=0)
    assert len(test) == len(data)
    changed = [(np.abs(p.image.astype(int) - c.image) > 25).any(2) for c, p in (test[k] for k in range(len(test)))]
    big = [data[k].label[4 + k:24 + k, 4:28].size for k in range(len(data))]
    local = evaluate(_TriggerReader(spec.num_classes, road, car, True), data, test, (48, 64), road,
                     progress=False, flips=True).metrics()["flip_breakdown"]
    # the largest car carries the stamp: its stamped pixels flip, the small car and clean images never
    assert local["carrier"]["pixels"] == sum(big)
    assert local["carrier"]["flipped"] == pytest.approx(sum(int(c.sum()) for c in changed) / sum(big))
    assert 0 < local["carrier"]["flipped"] < 1
    assert {k: local["other"][k] for k in ("flipped", "pixels")} == {"flipped": 0.0, "pixels": 120 * len(data)}
    assert {k: local["clean"][k] for k in ("flipped", "pixels")} == {"flipped": 0.0, "pixels": sum(big) + 120 * len(data)}
    assert local["clean"]["predicted_as"] == {car: 1.0}  # the reader keeps every untriggered car a car
    image_level = evaluate(_TriggerReader(spec.num_classes, road, car, False), data, test, (48, 64), road,
                           progress=False, flips=True).metrics()["flip_breakdown"]
    assert image_level["carrier"]["flipped"] == image_level["other"]["flipped"] == 1.0
    assert image_level["clean"]["flipped"] == 0.0
    assert "flip_breakdown" not in evaluate(_TriggerReader(spec.num_classes, road, car, True), data, test, (48, 64),
                                            road, progress=False).metrics()
