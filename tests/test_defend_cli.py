"""``badseg defend`` and ``defenses:`` in a config, end to end on a tiny synthetic run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from badseg.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished one-epoch O2B run on 16 synthetic streets whose config asks for pruning."""
    import torch

    from badseg.config import load_config
    from badseg.pipeline import run_experiment

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("defend") / "run"
    cfg = load_config(None, ["data.size=[32,64]", "data.train_length=16", "data.test_length=8", "attack.rate=0.5",
                             "trigger.size=0.3", "trigger.intensity=0.8", "model.name=fpn-effl0", "train.epochs=1",
                             "train.batch_size=4", "workers=1", "figure_samples=1",
                             "defenses=[{pruning: {fractions: [0.1]}}]"])
    run_experiment(cfg, out, progress=False, log=lambda *_: None)
    torch.set_num_threads(threads)
    return out


def test_config_defenses_run_after_training(tiny_run) -> None:
    result = json.loads((tiny_run / "defense_pruning.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert result["options"]["fractions"] == [0.1]
    assert result["before"] == {k: metrics[k] for k in ("asr", "pba", "cba")}
    (row,) = result["rows"]
    assert row["n_channels"] == round(0.1 * row["of_channels"]) == len(row["channels"])
    assert "<!-- defense:pruning -->" in (tiny_run / "report.md").read_text()


def test_defend_cli_writes_json_figure_and_one_report_section(tiny_run) -> None:
    args = ["defend", str(tiny_run), "--defense", "strip", "--set", "n=3", "--set", "images=3", "--set", "batch_size=3"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    result = json.loads((tiny_run / "defense_strip.json").read_text())
    assert result["n_clean"] == result["n_poisoned"] == 3 and result["options"]["n"] == 3
    assert len(result["scores_clean"]) == 3 and 0.0 <= result["auc"] <= 1.0
    assert (tiny_run / result["figure"]).is_file()
    again = CliRunner().invoke(app, args)  # finished with the same options: not run again, one section
    assert again.exit_code == 0 and "not running it again" in again.output
    assert (tiny_run / "report.md").read_text().count("<!-- defense:strip -->") == 1


@pytest.mark.parametrize("args, message", [
    (["--defense", "nope"], "unknown defense 'nope'"),
    (["--defense", "strip", "--set", "copies=3"], "has no option 'copies'"),
])
def test_defend_cli_bad_input_exits_2_with_one_message(tiny_run, args, message) -> None:
    r = CliRunner().invoke(app, ["defend", str(tiny_run), *args])
    assert r.exit_code == 2 and message in " ".join(r.output.split()) and "Traceback" not in r.output


def test_defend_cli_on_a_folder_that_is_not_a_run(tmp_path) -> None:
    r = CliRunner().invoke(app, ["defend", str(tmp_path), "--defense", "strip"])
    assert r.exit_code == 2 and "not a finished badseg run" in " ".join(r.output.split())


def test_a_defense_finished_before_an_option_existed_is_not_run_again(tmp_path) -> None:
    import numpy as np

    from badseg.config import ConfigError
    from badseg.defenses import run_defense
    from badseg.defenses.base import detector_result
    from badseg.defenses.runner import resolve_options

    options = resolve_options("beatrix", {"images": 7})
    stored = {k: v for k, v in options.items() if k != "clean"}  # written before Beatrix had `clean`
    result = {"defense": "beatrix", "options": stored, **detector_result(np.arange(7.0), np.arange(7.0) + 3, 0.05)}
    (tmp_path / "defense_beatrix.json").write_text(json.dumps(result))
    messages: list[str] = []
    done = run_defense(tmp_path, "beatrix", ["images=7"], log=messages.append)  # no run folder: it must not rebuild one
    assert done == result and "not running it again" in messages[0]
    with pytest.raises(ConfigError, match="not a finished badseg run"):  # another option's value: run (and fail here)
        run_defense(tmp_path, "beatrix", ["images=7", "clean=originals"], log=messages.append)
