"""Explicit model seeding, the backdoored/clean pair, the shared clean model, deterministic mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from badseg import build
from badseg.build import clean_model_key, clean_reference_model
from badseg.config import DEMO_CONFIG, load_config
from badseg.data import load_dataset
from badseg.models import MODELS, SegModel, build_model
from badseg.pipeline import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


class _Features(nn.Sequential):
    """Stride-2 conv features, as the list an encoder returns."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, super().forward(x)]


class _Last(nn.Module):
    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1]


def _tiny(num_classes: int) -> SegModel:
    """A conv net whose initial weights come from torch's global generator (no seed of its own)."""
    features = _Features(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
    return SegModel(features, _Last(), nn.Conv2d(6, num_classes, 1), feature_stride=2, size_divisor=2,
                    name="test-seeded")


if "test-seeded" not in MODELS.names():
    MODELS.register("test-seeded")(_tiny)

TINY = ["data.size=[32, 64]", "data.train_length=8", "data.test_length=4", "train.epochs=1", "train.batch_size=4",
        "eval_batch_size=4", "workers=1", "figure_samples=0", "attack.rate=0.5"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_model_seed_fixes_the_weights_and_leaves_the_global_generator_alone():
    before = torch.get_rng_state()
    one = build_model("fpn-effl0", 19, seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # whatever ran before does not matter
    assert _same(build_model("fpn-effl0", 19, seed=3).state_dict(), one)
    assert not _same(build_model("fpn-effl0", 19, seed=4).state_dict(), one)


def test_backdoored_and_clean_model_of_a_run_start_from_the_same_weights(tmp_path, monkeypatch):
    starts = []

    def fake_fit(model, dataset, cfg, out, resume=True, **_):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        torch.rand(1000)  # training draws from torch's generator in between
        return {"minutes": 0.0, "iterations": 1, "final_loss": 0.0}

    monkeypatch.setattr(build, "fit", fake_fit)
    cfg = load_config(None, [*TINY, "model.name=test-seeded", "clean_reference=true"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert len(starts) == 2 and _same(starts[0], starts[1])
    assert metrics["clean_model"]["key"] == clean_model_key(cfg)[0]


def test_clean_model_is_shared_by_runs_with_the_same_data_model_schedule_and_seed(tmp_path):
    base = [*TINY, "model.name=test-seeded"]
    cfg = load_config(None, base)
    same = [load_config(None, [*base, *more]) for more in (["attack.vector=ins", "attack.rate=0.2"],
                                                            ["trigger.size=0.3"], ["data.test_length=6"])]
    other = [load_config(None, [*base, more]) for more in ("train.epochs=2", "seed=1", "data.train_length=9",
                                                           "model.pretrained=imagenet", "trigger=auto")]
    assert {clean_model_key(c)[0] for c in same} == {clean_model_key(cfg)[0]}
    assert len({clean_model_key(c)[0] for c in [cfg, *other]}) == 1 + len(other)
    train = load_dataset("synthetic", split="train", length=8)
    shared = tmp_path / "clean_models"  # a sweep's cache
    first, info = clean_reference_model(cfg, train, tmp_path / "a", shared)
    again, info2 = clean_reference_model(same[0], train, tmp_path / "b", shared)  # another run of the sweep
    assert not info["reused"] and info2["reused"] and info2["folder"] == info["folder"]
    assert _same(first.state_dict(), again.state_dict())


def test_a_single_run_keeps_its_clean_model_in_its_own_folder(tmp_path):
    cfg = load_config(None, [*TINY, "model.name=test-seeded", "clean_reference=true"])
    metrics = run_experiment(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert Path(metrics["clean_model"]["folder"]) == tmp_path / "run" / "clean"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written beside the run folder


def test_deterministic_mode_gives_identical_metrics_twice(tmp_path):
    cfg = load_config(DEMO_CONFIG, [*TINY, "deterministic=true", "clean_reference=false"])
    runs = [run_experiment(cfg, tmp_path / name, progress=False, log=lambda *_: None) for name in ("a", "b")]
    timing = {"minutes", "train_minutes"}
    a, b = ({k: v for k, v in m.items() if k not in timing} for m in runs)
    assert a == b and a["asr"] is not None and a["n_poisoned_train"] > 0
    assert not torch.are_deterministic_algorithms_enabled()  # the switch is scoped to the run
