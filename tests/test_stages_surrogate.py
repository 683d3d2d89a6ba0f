"""BADSEG stage 1 (surrogate data and training) and the stages in ``badseg run`` and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from badseg.build import datasets_for
from badseg.cli import app
from badseg.config import ConfigError, RunConfig, load_config
from badseg.models import MODELS, SegModel
from badseg.pipeline import run_experiment
from badseg.stages import holdout_indices, surrogate_data, train_surrogate
from badseg.stages.auto import resolve_auto
from badseg.triggers import TRIGGER_GRIDS, TriggerSpec


def _parts(width: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of a 2-layer conv net at stride 2."""

    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [x, self.body(x)]

    class Dec(nn.Module):
        def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
            return feats[-1]

    return Enc(), Dec()


def _factory(name: str, width: int):
    def build(num_classes: int) -> SegModel:
        with torch.random.fork_rng():
            torch.manual_seed(width)
            enc, dec = _parts(width)
            head = nn.Conv2d(width, num_classes, 1)
        return SegModel(enc, dec, head, feature_stride=2, size_divisor=2, name=name)

    return build


for _name, _width in (("test-tiny-a", 8), ("test-tiny-b", 6)):
    if _name not in MODELS.names():
        MODELS.register(_name)(_factory(_name, _width))


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**over) -> RunConfig:
    base = [
        "data.name=synthetic", "data.size=[32, 64]", "data.train_length=20", "data.test_length=6",
        "model.name=test-tiny-a", "model.pretrained=none", "train.epochs=1", "train.batch_size=4",
        "surrogate.fraction=0.4", "search.steps=4", "search.batch_size=2", "eval_batch_size=4", "workers=1",
        "figure_samples=1",
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in over.items()])


# --- stage 1 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, fraction", [(2, 0.5), (10, 0.2), (367, 0.2), (50, 0.99), (7, 0.01)])
def test_holdout_split_is_disjoint_complete_and_deterministic(n, fraction):
    sur, vic = holdout_indices(n, fraction, seed=3)
    assert len(np.intersect1d(sur, vic)) == 0
    assert sorted(np.concatenate([sur, vic]).tolist()) == list(range(n))
    assert 1 <= len(sur) <= n - 1 and abs(len(sur) - fraction * n) <= 1
    assert np.array_equal(sur, holdout_indices(n, fraction, seed=3)[0])
    if n > 10:
        assert not np.array_equal(sur, holdout_indices(n, fraction, seed=4)[0])


def test_the_victim_never_trains_on_surrogate_images():
    cfg = _cfg()
    train, _ = datasets_for(cfg)
    data = surrogate_data(cfg, train)
    sur = {data.surrogate.sample_id(i) for i in range(len(data.surrogate))}
    vic = {data.victim_train.sample_id(i) for i in range(len(data.victim_train))}
    assert not sur & vic and len(sur | vic) == len(train) == 20 and len(sur) == 8
    aux = surrogate_data(_cfg(**{"surrogate.split": "test"}), train)
    assert aux.victim_train is train and len(aux.surrogate) == 6
    assert not {aux.surrogate.sample_id(i) for i in range(6)} & {train.sample_id(i) for i in range(20)}
    with pytest.raises(ConfigError, match="victim's training split"):
        surrogate_data(_cfg(**{"surrogate.split": "train"}), train)


def test_surrogate_is_trained_with_fit_and_not_silently_reused(tmp_path):
    cfg = _cfg(**{"surrogate.model": "test-tiny-b"})
    train, _ = datasets_for(cfg)
    data = surrogate_data(cfg, train)
    model, info = train_surrogate(cfg, data, tmp_path)
    assert model.name == "test-tiny-b" and info["pretrained"] == "none" and info["epochs"] == 1
    assert (tmp_path / "last.pt").is_file() and len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 1
    assert not any(p.requires_grad for p in model.parameters())
    again, _ = train_surrogate(cfg, data, tmp_path)  # finished: reloaded, not retrained
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ConfigError, match="trained differently"):
        train_surrogate(_cfg(**{"surrogate.model": "test-tiny-b", "surrogate.epochs": 2}), data, tmp_path)


# --- the stages in the pipeline and the CLI ----------------------------------------------------


def test_config_auto_values_are_typed_and_old_configs_stay_valid():
    cfg = load_config(None, ["trigger=auto", "pair=auto"])
    assert cfg.trigger == "auto" and cfg.pair == "auto"
    assert isinstance(load_config(None, []).trigger, TriggerSpec) and load_config(None, []).pair == "manual"
    for bad in (["trigger=best"], ["pair=yes"], ["trigger=auto", "trigger.size=0.2"], ["surrogate.fraction=1.0"]):
        with pytest.raises(ConfigError):
            load_config(None, bad)


def test_resolve_auto_picks_pair_and_trigger_and_holds_out_the_surrogate_images(tmp_path):
    cfg = _cfg(trigger="auto", pair="auto")
    train, _ = datasets_for(cfg)
    resolved, victim_train, record = resolve_auto(cfg, train, tmp_path, log=lambda *_: None)
    spec = train.spec
    assert spec.kind(spec.class_id(resolved.attack.victim)) == "object"  # o2b: object → stuff
    assert spec.kind(spec.class_id(resolved.attack.target)) == "stuff"
    assert (record["pair"]["victim"], record["pair"]["target"]) == (resolved.attack.victim, resolved.attack.target)
    grid = TRIGGER_GRIDS["o2b"]
    t = resolved.trigger
    assert t.shape in grid["shape"] and t.size in grid["size"] and t.quantity in grid["quantity"]
    assert t.intensity in grid["intensity"] and resolved.attack.options["placement"] in ("centre", "random_inside",
                                                                              "random_outside")
    assert len(victim_train) == 12 and record["surrogate"]["n_images"] == 8
    for path in ("surrogates/test-tiny-a/last.pt", "pairs/pairs.json", "pairs/pair_distances.png",
                 "trigger/trigger.json", "trigger/trigger_search.png"):
        assert (tmp_path / path).is_file(), path
    chosen = json.loads((tmp_path / "trigger" / "trigger.json").read_text())["chosen"]
    assert chosen["shape"] == t.shape
    manual = cfg.model_copy(update={"trigger": TriggerSpec(), "pair": "manual"})
    assert resolve_auto(manual, train, tmp_path / "unused") == (manual, train, {})


def test_run_with_auto_reports_the_choices(tmp_path):
    cfg = _cfg(trigger="auto", pair="manual", **{"attack.rate": 0.5})
    metrics = run_experiment(cfg, tmp_path, log=lambda *_: None)
    assert metrics["stages"]["trigger"]["chosen"]["shape"] == metrics["attack"]["trigger"]["shape"]
    assert "pair" not in metrics["stages"] and metrics["n_train"] == 12
    report = (tmp_path / "report.md").read_text()
    assert "## BADSEG stages" in report and "stages/trigger/trigger_search.png" in report
    assert "Stage 2 (trigger)" in report and "| circle |" in report


def test_cli_optimize_trigger_and_rank_pairs_with_two_surrogates(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data: {name: synthetic, size: [32, 64], train_length: 20, test_length: 6}\n"
                        "model: {name: test-tiny-a, pretrained: none}\n"
                        "train: {epochs: 1, batch_size: 4}\n"
                        "attack: {vector: b2b, victim: sidewalk, target: road}\n"
                        "search: {steps: 3, batch_size: 2}\neval_batch_size: 4\n")
    runner = CliRunner()
    shared = tmp_path / "surrogates"
    r = runner.invoke(app, ["optimize-trigger", str(cfg_file), "--out", str(tmp_path / "trig"), "--surrogates",
                            str(shared)])
    assert r.exit_code == 0, r.output
    assert "quantity" in r.output and (tmp_path / "trig" / "trigger.json").is_file()
    r = runner.invoke(app, ["rank-pairs", str(cfg_file), "--out", str(tmp_path / "pairs"), "--surrogates", str(shared),
                            "--model", "test-tiny-a", "--model", "test-tiny-b", "--top", "5"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "pairs" / "agreement.json").read_text())
    assert rows[0]["models"] == ["test-tiny-a", "test-tiny-b"] and -1 <= rows[0]["spearman"] <= 1
    assert "Spearman" in (tmp_path / "pairs" / "agreement.md").read_text()
    assert (tmp_path / "pairs" / "test-tiny-b" / "pairs.md").is_file()
    assert len(list(shared.iterdir())) == 2  # test-tiny-a trained once, reused by rank-pairs
    r = runner.invoke(app, ["optimize-trigger", str(cfg_file), "--out", str(tmp_path / "trig"), "--set",
                            "search.steps=5"])
    assert r.exit_code == 2 and "different config" in r.output


def test_learnability_search_from_a_config_holds_out_images_and_records_its_settings(tmp_path):
    cfg = _cfg(trigger="auto", **{"search.objective": "learnability", "search.pattern": "search",
                                  "search.holdout": 0.5})
    train, _ = datasets_for(cfg)
    resolved, _, record = resolve_auto(cfg, train, tmp_path, log=lambda *_: None)
    saved = json.loads((tmp_path / "trigger" / "trigger.json").read_text())
    n_applicable = saved["n_images"] + saved["settings"]["n_finetune"]
    assert saved["settings"]["objective"] == "learnability" and saved["settings"]["holdout"] == 0.5
    assert saved["n_images"] == round(0.5 * n_applicable) and saved["settings"]["n_finetune"] > 0
    assert set(saved["options"]["pattern"]) == {"checker", "noise", "solid", "stripes"}
    assert resolved.trigger.pattern.split(":")[0] == saved["chosen"]["pattern"]
    assert all("finetune" in h for h in saved["history"])
