"""Stage 2's learnability screen (``badseg.stages.screen``): candidate draws, the native-resolution
budget, successive halving, and a planted pair where only one candidate can be learned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from torch import nn

from badseg.attacks import build_attack
from badseg.config import load_config
from badseg.data import load_dataset
from badseg.data.base import SegDataset
from badseg.data.subset import Subset
from badseg.data.types import Sample
from badseg.metrics.stealth import psnr
from badseg.models import SegModel, build_model
from badseg.poisoning.dataset import PoisonedTestSet
from badseg.report.stage_report import screen_lines
from badseg.stages.auto import run_trigger_search, with_search_result
from badseg.stages.learnable import holdout_split
from badseg.stages.relaxed import ATTRIBUTES
from badseg.stages.screen import (
    ScreenSettings,
    _batches,
    draw_candidates,
    halving_schedule,
    screen_candidates,
    shortlist,
    spend_budget,
)
from badseg.stages.surrogate import surrogate_data
from badseg.train.augment import AugmentConfig, SegTorchDataset
from badseg.train.fit import train_step
from badseg.triggers import TriggerSpec

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (64, 128)


def test_halving_schedule_halves_down_to_two():
    assert halving_schedule(12) == [12, 6, 3, 2]
    assert halving_schedule(5) == [5, 3, 2]
    assert halving_schedule(2) == [2]
    assert halving_schedule(1) == [1]


def test_candidates_start_with_the_relaxation_choice_and_never_repeat():
    space = {"shape": ("circle", "square"), "size": (0.1, 0.2, 0.3), "position": ("centre", "cover"),
             "quantity": (1,), "intensity": (0.1, 0.2), "pattern": ("checker",), "colour": ("white",)}
    probs = {a: [1.0 / len(space[a])] * len(space[a]) for a in ATTRIBUTES}
    chosen = {"shape": 1, "size": 2, "position": 0, "quantity": 0, "intensity": 1, "pattern": 0, "colour": 0}
    a = draw_candidates(space, probs, chosen, pool=40, seed=3)
    keys = [tuple(c[k] for k in ATTRIBUTES) for c in a]
    assert a[0] == chosen and len(set(keys)) == len(keys)
    assert all(0 <= c[k] < len(space[k]) for c in a for k in ATTRIBUTES) and len(a) <= 1 + 10 + 40
    full = draw_candidates(space, probs, chosen, pool=400, seed=3)
    # the whole grid once: 12 stamp triggers, and under cover shape makes no difference, so 6 more
    assert len(full) == 18
    covers = [(c["size"], c["intensity"]) for c in full if space["position"][c["position"]] == "cover"]
    assert sorted(covers) == sorted({(i, j) for i in range(3) for j in range(2)})
    assert draw_candidates(space, probs, chosen, 40, seed=3) == a
    assert draw_candidates(space, probs, chosen, 6, seed=4) != draw_candidates(space, probs, chosen, 6, seed=5)


def test_shortlist_spends_the_budget_round_robin_over_positions():
    rows = [{"id": i, "options": {"position": pos}, "psnr": v, "in_budget": v >= 40}
            for i, (pos, v) in enumerate([("centre", 50), ("centre", 41), ("cover", 45), ("cover", 39),
                                          ("centre", 44), ("cover", 42), ("centre", 60)])]
    picked = shortlist(rows, 4)
    assert [r["id"] for r in picked] == [1, 5, 4, 2]  # lowest in-budget PSNR per position, alternating
    assert all(r["in_budget"] for r in shortlist(rows, 10)) and len(shortlist(rows, 10)) == 6


SPEC = load_dataset("synthetic", split="train", length=1).spec


class Blocks(SegDataset):
    """32×32 grey road with one dark-blue 12×12 car per image, at a seeded place."""

    spec = SPEC

    def __init__(self, n: int, seed: int = 0) -> None:
        self.places = np.random.default_rng(seed).integers(0, 20, size=(n, 2))

    def __len__(self) -> int:
        return len(self.places)

    def load(self, index: int) -> Sample:
        y, x = self.places[index]
        image = np.full((32, 32, 3), 110, np.uint8)
        label = np.full((32, 32), SPEC.class_id("road"), np.int64)
        instances = np.zeros((32, 32), np.int32)
        image[y:y + 12, x:x + 12] = (30, 40, 140)
        label[y:y + 12, x:x + 12] = SPEC.class_id("car")
        instances[y:y + 12, x:x + 12] = 1
        return Sample(image, label, instances, {"id": f"block{index}"})


class _Input(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


class _Dilated(nn.Module):
    """Four 3×3 convolutions (dilation 1, 2, 4, 2): a 19-px receptive field, wider than a car."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, d in enumerate((1, 2, 4, 2)):
            layers += [nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=d, dilation=d), nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.body(feats[-1])


@pytest.fixture(scope="module")
def blocks_surrogate():
    """The blocks and a stage-1 surrogate trained on them clean (80 Adam steps), which the proxies copy."""
    data = Blocks(24)
    torch.manual_seed(0)
    model = SegModel(_Input(), _Dilated(), nn.Conv2d(16, SPEC.num_classes, 1), feature_stride=1, size_divisor=1,
                     name="blocks")
    optim, scaler = torch.optim.Adam(model.parameters(), lr=1e-2), torch.amp.GradScaler(enabled=False)
    batches = _batches(SegTorchDataset(data), 8, 0)
    model.train()
    for _ in range(80):
        train_step(model, optim, scaler, next(batches), use_amp=False)
    return data, model.eval()


def _attack_of(options):
    trigger = TriggerSpec(shape=options["shape"], size=options["size"], intensity=options["intensity"],
                          quantity=options["quantity"], pattern=options["pattern"], min_size_px=4)
    return build_attack("o2b", SPEC, "car", "road", trigger=trigger)


def test_screen_picks_the_trigger_a_proxy_learns_and_keeps_the_native_budget(blocks_surrogate):
    """Planted pair: a near-invisible white patch (α 0.02) and a bright one (α 0.9), same shape,
    size and place, with the relaxation's choice on the faint one. Under a lax budget the screen
    trains both proxies and keeps the bright one, which they learn as a backdoor (ASR less the
    flips on clean cars) where the faint one is not; with the budget between the two, the bright
    one is dropped for its PSNR, which is measured on the native images exactly as the results' PSNR."""
    data, model = blocks_surrogate
    space = {"shape": ("square",), "size": (0.4,), "position": ("centre",), "quantity": (1,),
             "intensity": (0.02, 0.9), "pattern": ("solid",), "colour": ("white",)}
    probs = {a: [1.0 / len(space[a])] * len(space[a]) for a in ATTRIBUTES}
    chosen = {a: 0 for a in ATTRIBUTES}
    augment = AugmentConfig((1.0, 1.0), None, 0.0)
    settings = ScreenSettings(candidates=2, pool=4, steps=40, lr=1e-2, batch_size=8, poison_fraction=0.5,
                              holdout=0.5, psnr_min=10.0, seed=0)
    record = screen_candidates(space, probs, chosen, _attack_of, data, model, None, augment, None, None, settings)
    assert record["chosen"]["intensity"] == 0.9
    final = {r["id"]: r for r in record["rounds"][-1]}
    by_intensity = {r["options"]["intensity"]: r for r in record["pool"]}
    bright, faint = final[by_intensity[0.9]["id"]], final[by_intensity[0.02]["id"]]
    assert bright["asr"] - bright["clean_flip"] > 0.5 > faint["asr"] - faint["clean_flip"]
    assert bright["score"] > faint["score"]

    held = holdout_split(len(data), 0.5, 0)[1]
    test = PoisonedTestSet(Subset(data, held), _attack_of(by_intensity[0.9]["options"]), 0)
    native = np.mean([psnr(c.image, p.image) for c, p in (test[k] for k in range(len(test)))])
    assert by_intensity[0.9]["psnr"] == pytest.approx(native)
    assert by_intensity[0.02]["psnr"] > by_intensity[0.9]["psnr"] + 20

    tight = ScreenSettings(**{**settings.__dict__,
                              "psnr_min": (by_intensity[0.9]["psnr"] + by_intensity[0.02]["psnr"]) / 2})
    record = screen_candidates(space, probs, chosen, _attack_of, data, model, None, augment, None, None, tight)
    assert record["chosen"]["intensity"] == 0.02
    assert [r["in_budget"] for r in record["pool"] if r["options"]["intensity"] == 0.9] == [False]


def test_screen_runs_inside_trigger_auto_and_its_winner_is_the_victims_trigger(tmp_path):
    """``search.screen`` in a config: stage 2 writes the screen's record into trigger.json, the
    chosen options are its winner's (not necessarily the relaxation's argmax), and the victim's
    config carries them."""
    cfg = load_config(None, ["data.name=synthetic", "data.train_length=16", "data.size=[32,64]", "trigger=auto",
                             "model.name=deeplabv3plus-mbv2", "train.epochs=1", "train.batch_size=4", "surrogate.fraction=0.5",
                             "search.steps=3", "search.screen=3", "search.screen_pool=6", "search.screen_steps=2",
                             "search.psnr_min=20", "search.min_size_px=4"])
    train = load_dataset("synthetic", split="train", length=16)
    data = surrogate_data(cfg, train)
    model = build_model("deeplabv3plus-mbv2", train.spec.num_classes, seed=0)
    result = run_trigger_search(cfg, data, model, cfg.attack.victim, cfg.attack.target, tmp_path)
    stored = json.loads((tmp_path / "trigger.json").read_text())
    screen = stored["screen"]
    winner = next(r for r in screen["pool"] if r["id"] == screen["winner"])
    assert result.chosen == winner["options"] == stored["chosen"]
    assert winner["in_budget"] and winner["psnr"] >= 20
    assert len(screen["rounds"][0]) == sum(r["shortlisted"] for r in screen["pool"]) <= 3
    resolved = with_search_result(cfg, result)
    assert resolved.trigger.intensity == winner["options"]["intensity"]
    assert resolved.trigger.size == winner["options"]["size"]
    table = screen_lines(screen)
    assert sum(line.startswith("| **") for line in table) == 1 and len(table) == 5 + len(screen["rounds"][0])
    again = run_trigger_search(cfg, data, model, cfg.attack.victim, cfg.attack.target, tmp_path)
    assert again.chosen == result.chosen and again.screen == screen


def test_spend_budget_climbs_each_candidate_to_the_strongest_blend_in_budget():
    """PSNR 60 − 50·α with a 45 dB budget: 0.2 is the strongest option in budget. The climb stops at
    the first stronger option out of budget, and candidates that end on the same trigger merge."""
    measured = []

    def measure(options, **extra):
        psnr_ = 60 - 50 * options["intensity"] if options["shape"] != "odd" else {0.1: 50, 0.2: 40, 0.4: 50}[
            options["intensity"]]
        measured.append((options["shape"], options["intensity"]))
        return {"id": 100 + len(measured), "options": options, "psnr": psnr_, "in_budget": psnr_ >= 45, **extra}

    def row(i, shape, alpha, position="centre"):
        return {"id": i, "options": {"shape": shape, "size": 0.1, "position": position, "quantity": 1,
                                     "intensity": alpha, "pattern": "checker", "colour": "white"},
                "psnr": 60 - 50 * alpha, "in_budget": True}

    picked = [row(0, "circle", 0.05), row(1, "circle", 0.1), row(2, "odd", 0.1), row(3, "circle", 0.05, "cover"),
              row(4, "square", 0.05, "cover")]
    out = spend_budget(picked, (0.05, 0.1, 0.2, 0.4), measure)
    assert [(r["options"]["shape"], r["options"]["position"], r["options"]["intensity"]) for r in out] == [
        ("circle", "centre", 0.2), ("odd", "centre", 0.1), ("circle", "cover", 0.2)]
    assert out[0]["raised_from"] == 0 and out[1] is picked[2]
    assert ("odd", 0.4) not in measured  # stopped at 0.2, out of budget, though 0.4 would pass
    assert measured.count(("circle", 0.4)) == 3  # each circle climb ended on 0.4's failure


def test_the_screen_spends_the_budget_the_draws_left(blocks_surrogate):
    """The pool holds only the relaxation's faint choice (α 0.02); with ``spend`` the screen raises
    it to α 0.3, the strongest option in budget, and measures α 0.9 out of budget; without it the
    faint trigger is what it trains."""
    data, model = blocks_surrogate
    space = {"shape": ("square",), "size": (0.4,), "position": ("centre",), "quantity": (1,),
             "intensity": (0.02, 0.3, 0.9), "pattern": ("solid",), "colour": ("white",)}
    probs = {a: [1.0 / len(space[a])] * len(space[a]) for a in ATTRIBUTES}
    chosen = {a: 0 for a in ATTRIBUTES}
    augment = AugmentConfig((1.0, 1.0), None, 0.0)
    held = Subset(data, holdout_split(len(data), 0.5, 0)[1])
    at = {a: np.mean([psnr(c.image, p.image) for c, p in PoisonedTestSet(held, _attack_of(
        {**{k: v[0] for k, v in space.items()}, "intensity": a}), 0)]) for a in (0.3, 0.9)}
    settings = ScreenSettings(candidates=1, pool=0, steps=2, lr=1e-2, batch_size=8, psnr_min=(at[0.3] + at[0.9]) / 2,
                              seed=0, spend=True)
    record = screen_candidates(space, probs, chosen, _attack_of, data, model, None, augment, None, None, settings)
    assert record["chosen"]["intensity"] == 0.3
    pool = {r["options"]["intensity"]: r for r in record["pool"]}
    assert pool[0.3]["in_budget"] and pool[0.3]["shortlisted"] and pool[0.3]["raised_from"] == pool[0.02]["id"]
    assert not pool[0.9]["in_budget"] and not pool[0.02]["shortlisted"]
    assert [line.count("raised from candidate") for line in screen_lines(record)[4:-1]] == [1]
    record = screen_candidates(space, probs, chosen, _attack_of, data, model, None, augment, None, None,
                               ScreenSettings(**{**settings.__dict__, "spend": False}))
    assert record["chosen"]["intensity"] == 0.02 and len(record["pool"]) == 1
