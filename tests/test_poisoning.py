"""Poisoned datasets and ``badseg poison`` export: rate, determinism, manifest, safety."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import tree_digest

from badseg.attacks import build_attack
from badseg.data import load_dataset
from badseg.data.io import read_label_png, read_rgb
from badseg.poisoning import PoisonedDataset, PoisonedTestSet, export_poisoned, poison_count, scan
from badseg.triggers import TriggerSpec

TRIGGER = TriggerSpec("circle", 1 / 4, 0.8)



@pytest.fixture()
def camvid_copy(camvid_root, tmp_path):
    """A 12-image CamVid tree in tmp (the source must stay untouched)."""
    root = tmp_path / "camvid"
    lines = (camvid_root / "val.txt").read_text().splitlines()[:12]
    for line in lines:
        for rel in line.split():
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(camvid_root / rel, dst)
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


def test_rate_counts_and_its_cap():
    paper = poison_count(0.1, 367, 300)  # the paper's meaning: a fraction of the whole training set
    assert (paper.wanted, paper.chosen, paper.capped) == (37, 37, False)
    few = poison_count(0.1, 367, 20)
    assert (few.wanted, few.chosen, few.capped) == (37, 20, True) and "capped" in few.message()
    old = poison_count(0.1, 367, 300, "applicable")
    assert (old.wanted, old.chosen) == (30, 30)
    assert few.to_dict()["n_samples"] == 367 and few.to_dict()["n_applicable"] == 20


def test_rate_is_over_the_chosen_base_and_worker_count_does_not_matter(synthetic):
    attack = build_attack("o2b", synthetic.spec, "car", "road", TRIGGER)
    one = PoisonedDataset(synthetic, attack, rate=0.5, seed=3, workers=1, rate_of="applicable")
    two = PoisonedDataset(synthetic, attack, rate=0.5, seed=3, workers=2, rate_of="applicable")
    assert one.scan.reasons == two.scan.reasons
    assert len(one.poisoned_indices) == round(0.5 * len(one.scan.applicable))
    whole = PoisonedDataset(synthetic, attack, rate=0.5, seed=3, scan_result=one.scan)
    assert len(whole.poisoned_indices) == min(round(0.5 * len(synthetic)), len(one.scan.applicable))
    assert set(whole.poisoned_indices) <= set(one.scan.applicable)
    assert one.poisoned_indices == two.poisoned_indices
    i = one.poisoned_indices[0]
    assert np.array_equal(one[i].image, two[i].image) and np.array_equal(one[i].label, two[i].label)
    clean = next(j for j in range(len(synthetic)) if not one.is_poisoned(j))
    assert np.array_equal(one[clean].image, synthetic[clean].image)
    other_seed = PoisonedDataset(synthetic, attack, rate=0.5, seed=4, scan_result=None)
    assert other_seed.poisoned_indices != one.poisoned_indices


def test_most_victim_selection_poisons_the_images_with_the_most_victim_pixels(synthetic):
    attack = build_attack("o2b", synthetic.spec, "car", "road", TRIGGER)
    chosen = PoisonedDataset(synthetic, attack, rate=0.25, seed=3, select="most_victim")
    car = synthetic.spec.class_id("car")
    pixels = {i: int((synthetic[i].label == car).sum()) for i in range(len(synthetic))}
    assert chosen.scan.victim_pixels == [pixels[i] for i in range(len(synthetic))]
    n = len(chosen.poisoned_indices)
    assert n == chosen.count.chosen > 0
    applicable = chosen.scan.applicable
    rest = [i for i in applicable if i not in chosen.poisoned_indices]
    assert min(pixels[i] for i in chosen.poisoned_indices) >= max(pixels[i] for i in rest)
    # the seed still draws every per-sample trigger, but not which images are poisoned
    assert PoisonedDataset(synthetic, attack, rate=0.25, seed=9, select="most_victim").poisoned_indices == \
        chosen.poisoned_indices
    random = PoisonedDataset(synthetic, attack, rate=0.25, seed=3)
    assert sum(pixels[i] for i in chosen.poisoned_indices) > sum(pixels[i] for i in random.poisoned_indices)


def test_poisoned_test_set_holds_every_applicable_image_and_counts_the_rest(synthetic):
    attack = build_attack("o2b", synthetic.spec, "car", "road", TRIGGER)
    test = PoisonedTestSet(synthetic, attack, seed=0)
    assert len(test) == len(scan(synthetic, attack, 0, test=True).applicable)
    assert len(test) + sum(test.skipped.values()) == len(synthetic)
    clean, p = test[0]
    assert p.asr_mask.any() and not np.array_equal(clean.image, p.image)


def test_export_is_deterministic_safe_and_complete(camvid_copy, tmp_path):
    ds = load_dataset("camvid", root=camvid_copy, split="val")
    attack = build_attack("o2b", ds.spec, "car", "road", TRIGGER)
    before = tree_digest(camvid_copy)
    m1 = export_poisoned(ds, attack, 0.5, tmp_path / "p1", seed=1, workers=2, source=camvid_copy, progress=False)
    m2 = export_poisoned(ds, attack, 0.5, tmp_path / "p2", seed=1, workers=1, source=camvid_copy, progress=False)
    assert tree_digest(camvid_copy) == before
    assert tree_digest(tmp_path / "p1") == tree_digest(tmp_path / "p2")
    manifest = json.loads((tmp_path / "p1" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(m1)) and m1["samples"] == m2["samples"]
    poisoned = [r for r in manifest["samples"] if r["poisoned"]]
    assert len(poisoned) == manifest["n_poisoned"] == min(round(0.5 * manifest["n_samples"]), manifest["n_applicable"])
    assert manifest["layout"] == "source" and manifest["listing"] == "val.txt"
    assert sorted(p.stem for p in (tmp_path / "p1" / "asr_masks").iterdir()) == sorted(r["id"] for r in poisoned)
    for r in poisoned:
        assert r["stamps"] and r["stamps"][0]["size_px"] >= 4 and len(r["stamps"][0]["centre"]) == 2
        asr = read_label_png(tmp_path / "p1" / "asr_masks" / f"{r['id']}.png") > 0
        assert asr.sum() == r["asr_pixels"]
        new = read_label_png(tmp_path / "p1" / r["label"])  # CamVid's own ids
        assert (new[asr] == ds.spec.class_id("road")).all()
    clean = next(r for r in manifest["samples"] if not r["poisoned"])
    s = ds[clean["index"]]
    assert np.array_equal(read_rgb(tmp_path / "p1" / clean["image"]), s.image)
    assert all(("skip_reason" in r) == (r["index"] not in _applicable(manifest)) for r in manifest["samples"])


def _applicable(manifest):
    return {r["index"] for r in manifest["samples"] if "skip_reason" not in r}


def test_export_refuses_to_write_inside_the_source(camvid_copy):
    ds = load_dataset("camvid", root=camvid_copy, split="val")
    attack = build_attack("o2b", ds.spec, "car", "road", TRIGGER)
    with pytest.raises(ValueError, match="overlaps the source"):
        export_poisoned(ds, attack, 0.1, camvid_copy / "poisoned", source=camvid_copy, progress=False)
    assert not (camvid_copy / "poisoned").exists()


def test_export_refuses_a_non_empty_output(camvid_copy, tmp_path):
    ds = load_dataset("camvid", root=camvid_copy, split="val")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_poisoned(ds, build_attack("o2b", ds.spec, "car", "road"), 0.1, out, progress=False)
    assert (out / "keep.txt").read_text() == "x"


def test_atomic_writes_honour_the_umask(tmp_path) -> None:
    """Outputs get the permissions ``open()`` would give (mkstemp alone makes them owner-only)."""
    import os

    from badseg.data.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_overwrite_replaces_only_an_earlier_export_and_cleans_stale_staging(synthetic, tmp_path, monkeypatch):
    import os

    from badseg.outdir import OutputError
    from badseg.poisoning.export import is_export

    monkeypatch.chdir(tmp_path)
    ds = synthetic
    attack = build_attack("o2b", ds.spec, "car", "road", TRIGGER)
    kw = dict(workers=1, progress=False)
    out = tmp_path / "exp"
    stale = tmp_path / f".exp.partial-{_dead_pid()}"
    (stale / "images").mkdir(parents=True)
    live = tmp_path / f".exp.partial-{os.getppid()}"  # a live process's staging folder is left alone
    live.mkdir()
    first = export_poisoned(ds, attack, 0.5, out, seed=0, **kw)
    assert is_export(out) and not stale.exists() and live.is_dir()
    (out / "extra.txt").write_text("from the first export")
    second = export_poisoned(ds, attack, 0.5, out, seed=1, overwrite=True, **kw)
    assert not (out / "extra.txt").exists() and second["seed"] == 1 != first["seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exp", live.name])  # no .old / .partial left

    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("years of work")
    for bad, match in [(other, "holds no badseg export"), (tmp_path, "working directory"),
                       (tmp_path.parent, "above the working directory"), (other / "thesis.txt", "not a folder")]:
        with pytest.raises((FileExistsError, OutputError), match=match):
            export_poisoned(ds, attack, 0.5, bad, overwrite=True, **kw)
    assert (other / "thesis.txt").read_text() == "years of work"
    monkeypatch.setenv("HOME", str(other))
    with pytest.raises(OutputError, match="home folder"):
        export_poisoned(ds, attack, 0.5, other, overwrite=True, **kw)
