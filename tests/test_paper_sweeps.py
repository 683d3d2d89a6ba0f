"""Every shipped sweep file under configs/paper/ expands and validates (without running): its
run configs load, the class pair exists in the dataset, the model is registered, and CamVid's
versions ask for no GPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from badseg.data import get_spec
from badseg.models.factory import MODELS
from badseg.report.tables import LAYOUTS
from badseg.sweep import load_sweep

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
FILES = sorted(PAPER.glob("*/*.yaml"))
OTHER = sorted((PAPER.parent / "sweeps").glob("*/*.yaml"))  # sweeps that are not paper tables


def test_there_is_a_sweep_file_per_paper_table_for_each_dataset():
    names = {p.stem for p in FILES}
    for dataset in ("cityscapes", "bdd100k", "camvid"):
        stems = {p.stem for p in (PAPER / dataset).glob("*.yaml")}
        assert stems == names, dataset
    assert {n.replace("-b2b", "") for n in names} <= set(LAYOUTS)  # each has a table layout


@pytest.mark.parametrize("path", FILES + OTHER, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_sweep_file_expands_and_validates(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no deprecated config keys in shipped files
        sweep = load_sweep(path)
    assert len(sweep.runs) >= 2
    for run in sweep.runs:
        spec = get_spec(run.cfg.data.name)
        assert run.cfg.data.name in path.parts
        spec.class_id(run.cfg.attack.victim), spec.class_id(run.cfg.attack.target)
        assert run.cfg.model.name in MODELS.names()
    gpus = sweep.spec.resources.gpus
    assert gpus == (0 if "camvid" in path.parts else 1)
