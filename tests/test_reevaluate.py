"""``badseg eval``: a finished run's model re-evaluated on another poisoned test set."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from badseg.cli import app
from badseg.config import load_config
from badseg.pipeline import run_experiment

TINY = ["data.size=[32,64]", "data.train_length=8", "data.test_length=4", "model.name=deeplabv3plus-mbv2",
        "train.epochs=1", "train.batch_size=4", "eval_batch_size=4", "workers=1", "figure_samples=1",
        "attack.rate=0.5", "trigger.size=0.3"]
runner = CliRunner()


def test_eval_reproduces_the_runs_own_metrics_and_measures_another_test_set(tmp_path, one_thread):
    run = tmp_path / "run"
    own = run_experiment(load_config(None, TINY), run, progress=False, log=lambda *_: None)
    stored = (run / "metrics.json").read_bytes()
    r = runner.invoke(app, ["eval", str(run)])
    assert r.exit_code == 0, r.output
    again = json.loads((run / "evals" / "own.json").read_text())
    for key in ("asr", "pba", "cba", "psnr", "n_poisoned_test"):
        assert again[key] == own[key], key  # same model, same poisoned test set → the same numbers
    r = runner.invoke(app, ["eval", str(run), "--set", "trigger.intensity=1.0"])
    assert r.exit_code == 0, r.output
    stronger = json.loads((run / "evals" / "trigger.intensity=1.0.json").read_text())
    assert stronger["psnr"] < own["psnr"] and stronger["overrides"] == ["trigger.intensity=1.0"]
    r = runner.invoke(app, ["eval", str(run), "--breakdown"])
    assert r.exit_code == 0 and "instance carrying the trigger" in r.output, r.output
    flips = json.loads((run / "evals" / "own.json").read_text())
    assert flips["asr"] == own["asr"] and "flip_breakdown" not in own
    pools = flips["flip_breakdown"]
    # the same images' victim pixels: the triggered ones split into carrier + other, the clean ones whole
    assert pools["carrier"]["pixels"] > 0
    assert pools["carrier"]["pixels"] + pools["other"]["pixels"] == pools["clean"]["pixels"]
    assert all(0.0 <= p["flipped"] <= 1.0 for p in pools.values() if p["pixels"])
    # the area bins hold the same triggered victim pixels, each instance once
    assert sum(row["pixels"] for row in flips["flip_by_area"]) == pools["clean"]["pixels"]
    assert "by instance area" in r.output
    assert (run / "evals" / "own-by-area.png").stat().st_size > 0
    assert (run / "metrics.json").read_bytes() == stored  # the run's own results are never touched


def test_eval_of_a_folder_without_a_trained_model_is_one_error(tmp_path):
    r = runner.invoke(app, ["eval", str(tmp_path)])
    assert r.exit_code == 2 and "not a trained run folder" in " ".join(r.output.split())
