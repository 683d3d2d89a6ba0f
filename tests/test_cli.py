"""The command line: listing, rendering, poisoning a real folder, and its error messages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from badseg.cli import app
from badseg.data import get_spec
from badseg.data.io import read_label_png, read_rgb
from badseg.poisoning.preview import pick_sheet_records

runner = CliRunner()


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_datasets_lists_every_reader_with_kinds():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    for name in ("synthetic", "camvid", "cityscapes", "bdd100k", "voc", "ade20k", "labpics"):
        assert name in result.output
    spec = get_spec("camvid")
    car_line = next(line for line in result.output.splitlines() if f" {spec.class_id('car')} " in line and "car" in line)
    road_line = next(line for line in result.output.splitlines() if " road " in line)
    assert "object" in car_line and "stuff" in road_line


def test_show_writes_a_three_panel_png(tmp_path):
    out = tmp_path / "show.png"
    result = runner.invoke(app, ["show", "--dataset", "synthetic", "--index", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    img = read_rgb(out)
    assert img.shape[1] > 2 * img.shape[0]  # image, labels and instances side by side
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


def test_unknown_dataset_names_the_known_ones(tmp_path):
    result = runner.invoke(app, ["show", "--dataset", "camvidd", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "camvid" in result.output and not (tmp_path / "x.png").exists()


def test_poison_camvid_writes_copy_manifest_and_sheet_without_touching_source(camvid_root, tmp_path):
    before = _tree_digest(camvid_root)
    out = tmp_path / "poisoned"
    args = ["poison", "-d", "camvid", "--root", str(camvid_root), "--split", "val", "--limit", "12",
            "-a", "o2b", "--victim", "car", "--target", "road", "--rate", "0.5", "--workers", "1",
            "--sheet", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_samples"] == 12
    assert manifest["n_poisoned"] == min(round(0.5 * manifest["n_samples"]), manifest["n_applicable"])
    assert (out / "contact_sheet.png").is_file()
    road, car = get_spec("camvid").class_id("road"), get_spec("camvid").class_id("car")
    for r in manifest["samples"]:
        label = read_label_png(out / r["label"])  # the source's layout (valannot/) and ids
        if r["poisoned"]:
            assert not (label == car).any()  # O2B: every car pixel relabelled
            asr = read_label_png(out / "asr_masks" / f"{r['id']}.png") > 0
            assert asr.sum() == r["asr_pixels"] > 0 and (label[asr] == road).all()
    assert _tree_digest(camvid_root) == before

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exist" in again.output.lower()
    inside = runner.invoke(app, args[:-1] + [str(camvid_root / "poisoned")])
    assert inside.exit_code == 2 and not (camvid_root / "poisoned").exists()


def test_poison_takes_the_run_config_and_its_flags_are_shortcuts_of_it(tmp_path):
    """``badseg poison CONFIG`` and the same attack spelled with flags write the same export."""
    config = tmp_path / "o2b.yaml"
    config.write_text("data: {name: synthetic, train_length: 10, limit_train: 8}\n"
                      "attack: {vector: o2b, victim: car, target: road, rate: 0.5, options: {carriers: all}}\n"
                      "trigger: {shape: square, size: 0.3, intensity: 0.8}\nseed: 2\n")
    common = ["--workers", "1", "--sheet", "0"]
    from_config = runner.invoke(app, ["poison", str(config), "--out", str(tmp_path / "a"), *common])
    from_flags = runner.invoke(app, ["poison", "-d", "synthetic", "-a", "o2b", "--victim", "car", "--target", "road",
                                     "--rate", "0.5", "--carriers", "all", "--shape", "square", "--size", "0.3",
                                     "--intensity", "0.8", "--seed", "2", "--limit", "8", "--set",
                                     "data.train_length=10", "--out", str(tmp_path / "b"), *common])
    assert from_config.exit_code == 0 and from_flags.exit_code == 0, from_config.output + from_flags.output
    a, b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert {k: v for k, v in a.items() if k != "manifest.json"} == {k: v for k, v in b.items() if k != "manifest.json"}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["config"]["options"]["carriers"] == "all" and manifest["n_samples"] == 8
    largest = runner.invoke(app, ["poison", str(config), "--set", "attack.options.carriers=largest",
                                  "--out", str(tmp_path / "c"), *common])
    assert largest.exit_code == 0, largest.output
    assert _tree_digest(tmp_path / "c") != a  # the override reaches the attack


def test_poison_rejects_a_pair_that_does_not_fit_the_vector(tmp_path, camvid_root):
    result = runner.invoke(app, ["poison", "-d", "camvid", "--root", str(camvid_root), "--limit", "2",
                                 "-a", "o2b", "--victim", "road", "--target", "car", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "road" in result.output and not (tmp_path / "o").exists()


def test_sheet_prefers_relabelled_samples_and_keeps_some_decoys():
    samples = [{"index": i, "poisoned": i % 2 == 0, "asr_pixels": 0 if i % 6 == 0 else 10} for i in range(60)]
    chosen = pick_sheet_records({"samples": samples}, 6)
    assert len(chosen) == 6 and all(r["poisoned"] for r in chosen)
    assert sum(r["asr_pixels"] == 0 for r in chosen) == 2
    assert [r["index"] for r in chosen] == sorted(r["index"] for r in chosen)
    assert chosen[-1]["index"] - chosen[0]["index"] > 30  # spread over the set, not the first frames
