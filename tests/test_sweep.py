"""Sweeps: expansion of crossed and zipped axes, the run hash, skip-finished, retries, Ctrl-C and
resume, the defense axis; scheduling logic on the in-process executor behind Ray's interface."""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from badseg.config import ConfigError, load_config
from badseg.data.io import write_json
from badseg.report.tables import LAYOUTS, TableError, build_table, load_records, sweeps_for
from badseg.sweep import LocalExecutor, SweepInterrupted, config_hash, load_sweep, run_sweep, select
from badseg.sweep.task import run_task

TINY = {"data.size": [32, 64], "data.train_length": 8, "data.test_length": 4, "model.name": "deeplabv3plus-mbv2",
        "train.epochs": 1, "train.batch_size": 4, "eval_batch_size": 4, "workers": 1, "figure_samples": 1}


def _sweep(tmp_path: Path, **body) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"set": TINY, **body}, sort_keys=False))
    return path


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)


class Stub:
    """A run task that writes a metrics.json made from the run's config, and counts its calls."""

    def __init__(self, fail: dict[str, int] | None = None, interrupt_at: int | None = None,
                 signal: int | None = None) -> None:
        self.signal = signal
        self.calls: list[str] = []
        self.fail = dict(fail or {})  # slug → failures left
        self.interrupt_at = interrupt_at

    def __call__(self, run, run_dir, base_dir, cwd, threads):
        self.calls.append(run.slug)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            if self.signal is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), self.signal)
        if self.fail.get(run.slug, 0) > 0:
            self.fail[run.slug] -= 1
            raise RuntimeError(f"boom in {run.slug}")
        metrics = {"asr": run.cfg.attack.rate + run.cfg.seed / 100, "cba": 0.5, "pba": 0.4}
        write_json(Path(run_dir) / "metrics.json", metrics)
        (Path(run_dir) / "config.yaml").write_text(yaml.safe_dump(run.cfg.model_dump(mode="json")))
        return metrics


# --- expansion and hashing -------------------------------------------------------------------------


def test_crossed_axes_expand_in_file_order_and_zipped_axes_advance_together(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, axes={"attack.rate": [0.1, 0.2], "trigger.size": [0.2, 0.3, 0.4],
                                              "trigger.intensity": [0.5, 0.6, 0.7], "seed": [0, 1]},
                              zip=[["trigger.size", "trigger.intensity"]]))
    got = [(r.cfg.attack.rate, r.cfg.trigger.size, r.cfg.trigger.intensity, r.cfg.seed) for r in sweep.runs]
    want = [(rate, s, i, seed) for rate in (0.1, 0.2) for s, i in ((0.2, 0.5), (0.3, 0.6), (0.4, 0.7))
            for seed in (0, 1)]
    assert got == want
    assert sweep.runs[0].slug == "rate-0.1_size-0.2_intensity-0.5_seed-0"
    assert len({r.hash for r in sweep.runs}) == 12


def test_named_axis_bundles_pick_a_base_config_and_set_several_keys(tmp_path):
    (tmp_path / "o2o.yaml").write_text("attack: {vector: o2o, victim: car, target: pedestrian}\n")
    sweep = load_sweep(_sweep(tmp_path, **{"_base_": "o2o.yaml", "axes": {"vector": {
        "o2o": {}, "b2b": {"attack.vector": "b2b", "attack.victim": "sidewalk", "trigger.quantity": 4}}}}))
    o2o, b2b = sweep.runs
    assert (o2o.cfg.attack.vector, o2o.cfg.attack.target, o2o.axes) == ("o2o", "pedestrian", {"vector": "o2o"})
    assert (b2b.cfg.attack.victim, b2b.cfg.attack.target, b2b.cfg.trigger.quantity) == ("sidewalk", "pedestrian", 4)


@pytest.mark.parametrize("body, message", [
    ({"axes": {"a.b": [1], "c": [1, 2]}, "zip": [["a.b", "c"]]}, "equal lengths"),
    ({"axes": {"seed": [1]}, "zip": [["seed", "nope"]]}, "not an axis"),
    ({"axes": {"trigger.sise": [0.1]}}, "trigger.sise=0.1"),
    ({"axes": {"seed": []}}, "no values"),
    ({"axis": {"seed": [1]}}, "axis"),
])
def test_bad_sweep_files_fail_with_the_reason(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_sweep(tmp_path, **body))


def test_hash_is_stable_across_sweeps_and_changes_with_any_setting(tmp_path):
    a = load_sweep(_sweep(tmp_path, axes={"seed": [3], "attack.rate": [0.2]})).runs[0]
    b = load_sweep(_sweep(tmp_path, axes={"attack.rate": [0.2, 0.3], "seed": [3]})).runs[0]
    assert a.hash == b.hash and a.slug != b.slug  # the same run, whatever sweep names it
    cfg = a.cfg
    assert config_hash(cfg.model_copy(update={"seed": 4})) != a.hash
    assert config_hash(cfg, "fine-tuning") != a.hash != config_hash(cfg, "fine-tuning", ("fraction=0.1",))
    # a key set explicitly to its default is the same run as one left out
    default = load_config(None, [f"{k}={json.dumps(v)}" for k, v in TINY.items()] + ["seed=3", "attack.rate=0.2"])
    explicit = load_config(None, [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
                           + ["seed=3", "attack.rate=0.2", "train.hflip=0.5"])
    assert config_hash(default) == config_hash(explicit) == a.hash


# --- scheduling ------------------------------------------------------------------------------------


def test_finished_runs_are_skipped_and_unfinished_ones_run(tmp_path):
    path = _sweep(tmp_path, axes={"attack.rate": [0.1, 0.2], "seed": [0, 1]})
    stub = Stub()
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=stub)
    assert result.count("done") == 4 and len(stub.calls) == 4
    finished = sorted((tmp_path / "out" / "runs").glob("*/metrics.json"))
    before = {p: p.read_bytes() for p in finished}
    finished[0].unlink()  # one run lost its result (e.g. interrupted before it finished)
    again = Stub()
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=again)
    assert len(again.calls) == 1 and result.count("skipped") == 3
    assert all(p.read_bytes() == b for p, b in before.items() if p != finished[0])


def test_a_failure_is_recorded_with_its_traceback_and_retried_a_bounded_number_of_times(tmp_path):
    path = _sweep(tmp_path, axes={"seed": [0, 1]}, retries=1)
    stub = Stub(fail={"seed-0": 1, "seed-1": 5})
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=stub)
    states = {s.run.slug: s for s in result.states}
    assert states["seed-0"].status == "done" and states["seed-0"].attempts == 2
    assert states["seed-1"].status == "failed" and states["seed-1"].attempts == 2  # 1 try + 1 retry
    trace = (states["seed-1"].path / "failures" / "attempt-2.txt").read_text()
    assert "Traceback" in trace and "RuntimeError: boom in seed-1" in trace
    assert len(list((states["seed-0"].path / "failures").glob("*.txt"))) == 1
    assert not (states["seed-1"].path / "metrics.json").exists()


@pytest.mark.parametrize("sig", [None, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_and_a_rerun_resumes_without_redoing_finished_runs(tmp_path, sig):
    path = _sweep(tmp_path, axes={"attack.rate": [0.1, 0.2], "seed": [0, 1]})
    stub = Stub(interrupt_at=3, signal=sig)
    with pytest.raises(SweepInterrupted, match="2 of 4 runs finished"):
        run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=stub)
    again = Stub()
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=again)
    everything = [r.slug for r in load_sweep(path).runs]
    assert again.calls == [s for s in everything if s not in stub.calls[:2]]
    assert result.count("skipped") == 2 and result.count("done") == 2


def test_defense_axis_runs_the_defense_on_the_finished_base_run(tmp_path, monkeypatch):
    calls = []

    def run_defense(run_dir, name, overrides, progress, log):
        assert (run_dir / "metrics.json").is_file()  # the base run finished first
        calls.append((run_dir.name, name, overrides))
        rows = [{"fraction": 0.1, "asr": 0.01, "cba": 0.5, "pba": 0.4}, {"fraction": 0.05, "asr": 0.2}]
        return {"kind": "mitigation", "defense": name, "rows": rows}

    monkeypatch.setitem(sys.modules, "badseg.defenses", types.SimpleNamespace(run_defense=run_defense))
    path = _sweep(tmp_path, axes={"seed": [0], "defense": {"none": {"defense": None},
                                                           "ft-10": {"defense": "fine-tuning", "defense.fraction": 0.1}}})
    sweep = load_sweep(path)
    assert [r.defense for r in sweep.runs] == [None, "fine-tuning"]
    stub = Stub()

    def task(run, run_dir, base_dir, cwd, threads):
        return stub(run, run_dir, base_dir, cwd, threads) if run.defense is None else run_task(
            run, run_dir, base_dir, cwd, threads)

    result = run_sweep(sweep, tmp_path / "out", LocalExecutor(), _quiet(), task=task)
    assert result.count("done") == 2 and len(stub.calls) == 1
    base = next(s for s in result.states if s.run.defense is None)
    assert calls == [(base.path.name, "fine-tuning", ["fraction=0.1"])]
    defended = json.loads(next(s for s in result.states if s.run.defense).path.joinpath("metrics.json").read_text())
    assert defended["defense"] == "fine-tuning" and defended["base_run"] == str(base.path.resolve())
    table = build_table(load_records(tmp_path / "out"), LAYOUTS["table14"])
    asr = {col: table.cells[(("o2b",), col)].stats("asr")[0] for col in table.col_keys}
    assert asr == {"none": 0.1, "fine-tuning 0.05": 0.2, "fine-tuning 0.1": 0.01}  # one column per row


def test_defenses_of_one_run_go_one_after_another(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, axes={"seed": [0], "defense": [None, "strip", "teco"]}))
    base, strip, teco = sweep.runs
    assert strip.needs == (base.hash,) and teco.needs == (base.hash, strip.hash)


def test_only_keeps_the_matching_runs_and_the_base_runs_their_defenses_need(tmp_path):
    path = _sweep(tmp_path, axes={"attack.rate": [0.1, 0.2], "seed": [0, 1], "defense": [None, "pruning"]})
    sweep = load_sweep(path)
    picked = select(sweep, ["attack.rate=0.2", "defense=pruning"])
    assert {(r.cfg.attack.rate, r.cfg.seed, r.defense) for r in picked.runs} == {
        (0.2, 0, None), (0.2, 1, None), (0.2, 0, "pruning"), (0.2, 1, "pruning")}
    assert [r.hash for r in picked.runs] == [r.hash for r in sweep.runs if r in picked.runs]  # order kept
    assert len(select(sweep, ["seed=0,1"]).runs) == len(sweep.runs)
    for bad, message in ((["colour=red"], "no axis 'colour'"), (["seed=7"], "no value 7"), (["seed"], "axis=label")):
        with pytest.raises(ConfigError, match=message):
            select(sweep, bad)


def test_runs_of_a_sweep_share_one_clean_model_in_the_sweep_folder(tmp_path):
    path = _sweep(tmp_path, set={**TINY, "clean_reference": True}, axes={"attack.rate": [0.25, 0.5]})
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=run_task)
    first, second = (s.metrics["clean_model"] for s in result.states)
    assert not first["reused"] and second["reused"] and first["folder"] == second["folder"]
    assert Path(first["folder"]).parent == (tmp_path / "out" / "clean_models").resolve()


def test_each_table_takes_the_runs_of_its_own_sweep_files_from_a_shared_folder(tmp_path):
    out = tmp_path / "out"
    rates = tmp_path / "table23.yaml"
    rates.write_text(yaml.safe_dump({"set": TINY, "axes": {"attack.rate": [0.1, 0.2]}}))
    seeds = tmp_path / "table5.yaml"  # shares its rate-0.2 run with table23
    seeds.write_text(yaml.safe_dump({"set": {**TINY, "attack.rate": 0.2}, "axes": {"seed": [0, 1]}}))
    run_sweep(select(load_sweep(rates), ["attack.rate=0.1"]), out, LocalExecutor(), _quiet(), task=Stub())
    run_sweep(load_sweep(rates), out, LocalExecutor(), _quiet(), task=Stub())  # --only parts add up
    run_sweep(load_sweep(seeds), out, LocalExecutor(), _quiet(), task=Stub())
    assert sweeps_for(out, "table23") == ["table23"] and sweeps_for(out, "table2") == []
    by_rate = {r.config["attack.rate"] for r in load_records(out, ["table23"])}
    by_seed = {(r.config["attack.rate"], r.config["seed"]) for r in load_records(out, ["table5"])}
    assert by_rate == {0.1, 0.2} and by_seed == {(0.2, 0), (0.2, 1)}
    assert len(load_records(out)) == 3
    with pytest.raises(TableError, match="no sweep 'table24'.*table23, table5"):
        load_records(out, ["table24"])


def test_runs_waiting_on_a_failed_run_are_blocked(tmp_path):
    path = _sweep(tmp_path, axes={"defense": [None, "pruning"]}, retries=0)
    stub = Stub(fail={"defense-null": 1})
    result = run_sweep(load_sweep(path), tmp_path / "out", LocalExecutor(), _quiet(), task=stub)
    assert sorted(s.status for s in result.states) == ["blocked", "failed"] and len(stub.calls) == 1
