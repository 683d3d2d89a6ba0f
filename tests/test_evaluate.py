"""evaluate(): the ASR breakdown by the trigger stamp's width at the model's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from badseg.attacks import build_attack
from badseg.evaluate import evaluate
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
