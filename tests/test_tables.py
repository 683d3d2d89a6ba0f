"""``badseg table``: a sweep folder's runs as the paper's tables, seeds pooled into mean ± std."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
import yaml
from typer.testing import CliRunner

from badseg.cli import app
from badseg.data.io import write_json
from badseg.report.tables import LAYOUTS, TableError, build_table, load_records

runner = CliRunner()


def _run(root, name, vector, rate, seed, asr, cba=0.5, **config):
    d = root / "runs" / name
    d.mkdir(parents=True)
    write_json(d / "run.json", {"hash": name, "slug": name, "axes": {"seed": seed}, "defense": None, "base_hash": None})
    cfg = {"attack": {"vector": vector, "rate": rate}, "seed": seed, "model": {"name": "fpn-effl0"}, **config}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_json(d / "metrics.json", {"asr": asr, "cba": cba, "pba": 0.4, "psnr": 40.0})


ASRS = {("o2b", 0.1): [0.61, 0.70, 0.66], ("o2b", 0.2): [0.90, 0.94, 0.93], ("b2o", 0.1): [0.80]}


@pytest.fixture
def sweep_dir(tmp_path):
    for (vector, rate), values in ASRS.items():
        for seed, asr in enumerate(values):
            _run(tmp_path, f"{vector}-{rate}-{seed}", vector, rate, seed, asr)
    (tmp_path / "runs" / "unfinished").mkdir()  # no metrics.json: left out
    return tmp_path


def test_seeds_are_pooled_into_mean_and_sample_std(sweep_dir):
    table = build_table(load_records(sweep_dir), LAYOUTS["table23"])
    assert table.row_keys == [("b2o",), ("o2b",)] and table.col_keys == [0.1, 0.2]
    for (vector, rate), values in ASRS.items():
        mean, std, n = table.cells[((vector,), rate)].stats("asr")
        assert n == len(values) and mean == pytest.approx(statistics.mean(values))
        assert std == (pytest.approx(statistics.stdev(values)) if n > 1 else None)
    md = table.markdown()
    o2b = next(line for line in md.splitlines() if line.startswith("| o2b"))
    assert f"{statistics.mean(ASRS['o2b', 0.1]):.3f} ± {statistics.stdev(ASRS['o2b', 0.1]):.3f}" in o2b
    assert "| b2o | 0.800 | – | 1 |" in md  # a missing cell is a dash, not a number
    rows = list(csv.DictReader(io.StringIO(table.csv())))
    assert {(r["vector"], r["attack.rate"], r["n"]) for r in rows} == {("o2b", "0.1", "3"), ("o2b", "0.2", "3"),
                                                                              ("b2o", "0.1", "1")}


def test_runs_that_differ_in_an_unshown_key_are_not_averaged(sweep_dir):
    _run(sweep_dir, "o2b-0.1-big", "o2b", 0.1, 5, 0.99, trigger={"size": 0.5})
    with pytest.raises(TableError, match="trigger.size"):
        build_table(load_records(sweep_dir), LAYOUTS["table23"])


def test_cli_table_writes_markdown_csv_and_the_papers_plot(sweep_dir):
    r = runner.invoke(app, ["table", str(sweep_dir), "--layout", "table23"])
    assert r.exit_code == 0, r.output
    for ext in ("md", "csv", "png"):
        assert (sweep_dir / "tables" / f"table23.{ext}").stat().st_size > 100
    assert "Table 23" in r.output and "± " in r.output
    r = runner.invoke(app, ["table", str(sweep_dir), "--layout", "table24", "--rows", "attack.vector,attack.rate"])
    assert r.exit_code == 0, r.output
    assert "| o2b | 0.2 | 0.923 ± " in (sweep_dir / "tables" / "table24.md").read_text()


@pytest.mark.parametrize("args, message", [(["--layout", "table99"], "table23"),
                                           (["--layout", "table9"], "attack.options.placement")])
def test_cli_table_errors_are_one_message(sweep_dir, args, message):
    r = runner.invoke(app, ["table", str(sweep_dir), *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_a_detector_table_has_no_column_for_the_undefended_run(tmp_path):
    _run(tmp_path, "base", "o2b", 0.2, 0, 0.9)
    d = tmp_path / "runs" / "strip"
    d.mkdir()
    write_json(d / "run.json", {"hash": "strip", "slug": "strip", "axes": {}, "defense": "teco", "base_hash": "base"})
    write_json(d / "metrics.json", {"kind": "detector", "defense": "teco", "auc": 0.3,
                                    "at_fpr": {"acc": 0.5, "recall": 0.0, "f1": 0.0}})
    table = build_table(load_records(tmp_path), LAYOUTS["table16"])
    assert table.col_keys == ["teco"]
    assert table.cells[(("o2b",), "teco")].stats("auc")[0] == 0.3
    assert build_table(load_records(tmp_path), LAYOUTS["table14"]).col_keys == ["none", "teco"]


def test_the_frontier_names_each_methods_stealth_price(tmp_path):
    """Highest mean PSNR whose mean ASR over seeds reaches 0.9; a method that never does gets a dash."""
    points = {("a", 0.2): ([0.95, 0.91], 38.0), ("a", 0.1): ([0.92, 0.86], 41.0),  # mean 0.89 < 0.9
              ("a", 0.3): ([0.97, 0.97], 35.0), ("b", 0.1): ([0.5, 0.6], 44.0)}
    for (method, alpha), (asrs, psnr) in points.items():
        for seed, asr in enumerate(asrs):
            d = tmp_path / "runs" / f"{method}-{alpha}-{seed}"
            d.mkdir(parents=True)
            write_json(d / "run.json", {"hash": d.name, "slug": d.name, "defense": None, "base_hash": None,
                                        "axes": {"attack": method, "trigger.intensity": alpha, "seed": seed}})
            (d / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "trigger": {"intensity": alpha}}))
            write_json(d / "metrics.json", {"asr": asr, "cba": 0.5, "psnr": psnr + seed * 0.5})
    md = build_table(load_records(tmp_path), LAYOUTS["frontier"]).markdown()
    assert md.rstrip().endswith("a 38.25; b –")
    r = runner.invoke(app, ["table", str(tmp_path), "--layout", "frontier", "--where", "attack=a"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tables" / "frontier-a.md").read_text().rstrip().endswith("a 38.25")


def test_cli_table_where_keeps_only_the_matching_runs_and_names_its_files(sweep_dir):
    r = runner.invoke(app, ["table", str(sweep_dir), "--layout", "table23", "--where", "attack.vector=o2b"])
    assert r.exit_code == 0, r.output
    md = (sweep_dir / "tables" / "table23-o2b.md").read_text()
    assert "| o2b |" in md and "| b2o |" not in md
    r = runner.invoke(app, ["table", str(sweep_dir), "--layout", "table23", "--where", "attack.rate=0.2"])
    assert r.exit_code == 0, r.output
    header = (sweep_dir / "tables" / "table23-0.2.md").read_text().splitlines()[2]
    assert header == "| vector | 0.2 | n |"
    r = runner.invoke(app, ["table", str(sweep_dir), "--layout", "table23", "--where", "attack.vector"])
    assert r.exit_code == 2 and "key=value" in r.output


def test_a_searched_trigger_takes_the_frontier_row_of_the_trigger_stage_2_chose(tmp_path):
    """``trigger: auto`` runs have no trigger.intensity in their config; the frontier reads the chosen one."""
    for seed, (alpha, asr) in enumerate([(0.1, 0.8), (0.05, 0.6)]):
        d = tmp_path / "runs" / f"auto-{seed}"
        d.mkdir(parents=True)
        write_json(d / "run.json", {"hash": d.name, "slug": d.name, "defense": None, "base_hash": None,
                                    "axes": {"attack": "o2b", "seed": seed}})
        (d / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "trigger": "auto"}))
        write_json(d / "metrics.json", {"asr": asr, "cba": 0.5, "psnr": 45.0 + seed,
                                        "attack": {"trigger": {"intensity": alpha, "shape": "circle"}}})
    table = build_table(load_records(tmp_path), LAYOUTS["frontier"])
    assert table.row_keys == [("o2b", 0.05), ("o2b", 0.1)]
    assert table.cells[(("o2b", 0.1), None)].stats("asr") == (0.8, None, 1)
