"""``badseg scan``: how many images a config's attack applies to, as ``badseg run`` would poison them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from badseg.build import attack_for, datasets_for
from badseg.cli import app
from badseg.config import DEMO_CONFIG, load_config
from badseg.poisoning.dataset import PoisonedDataset, PoisonedTestSet

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.train_length=20", "data.test_length=8", "workers=1"]
runner = CliRunner()


def _scan(tmp_path, config, overrides: list[str], *extra: str) -> list[dict]:
    out = tmp_path / "scan.json"
    r = runner.invoke(app, ["scan", str(config), *(a for o in overrides for a in ("--set", o)), *extra,
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_scan_counts_what_the_run_would_poison_and_test_on(tmp_path) -> None:
    overrides = [*SMALL, "trigger.size=0.6", "trigger.min_size_px=20", "attack.rate=0.5"]  # big stamps: some skips
    (row,) = _scan(tmp_path, DEMO_CONFIG, overrides)
    cfg = load_config(DEMO_CONFIG, overrides)
    train, test = datasets_for(cfg)
    attack = attack_for(cfg, train)
    poisoned = PoisonedDataset(train, attack, cfg.attack.rate, cfg.seed, rate_of=cfg.attack.rate_of)
    poisoned_test = PoisonedTestSet(test, attack, cfg.seed)
    assert row["train"]["n_applicable"] == len(poisoned.scan.applicable) < len(train)
    assert row["train"]["poison_count"] == poisoned.count.to_dict()
    assert row["train"]["n_applicable"] + sum(row["train"]["skipped"].values()) == row["train"]["n_samples"] == 20
    assert row["test"]["n_applicable"] == len(poisoned_test) and row["test"]["skipped"] == poisoned_test.skipped
    assert list(tmp_path.iterdir()) == [tmp_path / "scan.json"]  # nothing but --out is written


def test_scan_gives_one_row_per_con_condition(tmp_path) -> None:
    overrides = [*SMALL, "attack.vector=con", "attack.options={}"]
    rows = _scan(tmp_path, DEMO_CONFIG, overrides, "--condition", "red", "--condition", "red&width>=40")
    assert [r["condition"] for r in rows] == ["red", "red&width>=40"]
    red, wide = (r["train"] for r in rows)
    assert 0 < wide["n_applicable"] < red["n_applicable"]  # a stricter predicate applies to fewer images
    assert all("'red'" in reason for reason in red["skipped"])
