"""Property (issue 14): for random small datasets and random attack/trigger settings, ``badseg poison``
either writes a valid export or refuses with one clear message — never a traceback.

A valid export (DESIGN §5, §6): a drop-in copy in the source's layout that the source's own reader
reads back, every source sample once in the manifest and on disk at its source size;
``n_poisoned = min(round(rate · n_samples), n_applicable)`` (the paper's rate) and ``n_applicable``
plus the skipped counts is every sample (inapplicable ones carry their reason, none is
half-poisoned); an unpoisoned sample is the source sample unchanged, void ids included, file
for file; a poisoned one has an ASR mask of
``asr_pixels`` pixels (and none otherwise), label ids inside the spec, and for the BADSEG
vectors the target class over its whole ASR region. The source is never written to.

A seeded generator loop rather than hypothesis: the same trials every run, sized to the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from conftest import tree_digest

from badseg.cli import app
from badseg.data import load_dataset
from badseg.data.camvid import CAMVID_SPEC, CAMVID_VOID
from badseg.data.io import read_label_png, read_rgb

runner = CliRunner()
SPEC = CAMVID_SPEC
STUFF = [SPEC.classes[i] for i in SPEC.stuff_ids]
OBJECTS = [SPEC.classes[i] for i in SPEC.object_ids]
VECTORS = ("o2o", "o2b", "b2o", "b2b", "ins", "con")
ATTACKS = (*VECTORS, "hba", "iba", "iba-nni", "ofba", "conseg")
TRIALS = 14


def _random_dataset(root: Path, rng: np.random.Generator) -> int:
    """2–6 frames of random size: stuff bands, 0–3 object boxes, some void; CamVid's SegNet layout."""
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    n = int(rng.integers(2, 7))
    for i in range(n):
        h, w = int(rng.integers(24, 97)), int(rng.integers(24, 129))
        label = np.full((h, w), SPEC.class_id(rng.choice(STUFF)), np.uint8)
        cut = int(rng.integers(1, h))
        label[cut:] = SPEC.class_id(rng.choice(STUFF))
        for _ in range(int(rng.integers(0, 4))):
            bh, bw = int(rng.integers(2, h // 2 + 2)), int(rng.integers(2, w // 2 + 2))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            label[y: y + bh, x: x + bw] = SPEC.class_id(rng.choice(OBJECTS))
        if rng.random() < 0.3:
            label[rng.random((h, w)) < 0.02] = CAMVID_VOID
        colours = np.vstack([SPEC.palette, [[0, 0, 0]]])
        image = np.clip(colours[label] + rng.integers(-30, 31, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "train" / f"s{i}.png")
        Image.fromarray(label).save(root / "trainannot" / f"s{i}.png")
    return n


def _random_args(rng: np.random.Generator) -> tuple[list[str], str, float]:
    attack = str(rng.choice(ATTACKS))
    victim, target = (str(rng.choice(OBJECTS if rng.random() < 0.6 else STUFF)) for _ in range(2))
    if attack in ("b2o", "b2b") and rng.random() < 0.8:
        victim = str(rng.choice(["road", "sidewalk", "building", "sky"]))
    rate = float(rng.choice([0.0, 0.5, 1.0, round(float(rng.random()), 2)]))
    args = ["-a", attack, "--victim", victim, "--target", target, "--rate", str(rate),
            "--seed", str(int(rng.integers(0, 1000))),
            "--shape", str(rng.choice(["circle", "square", "triangle", "logo"])),
            "--size", str(round(float(rng.uniform(0.05, 0.6)), 3)),
            "--intensity", str(round(float(rng.random()), 2)),
            "--quantity", str(int(rng.integers(1, 4))),
            "--pattern", str(rng.choice(["checker", "noise", "solid:red"])),
            "--min-size-px", str(int(rng.integers(1, 9)))]
    if rng.random() < 0.3:
        args += ["--placement", str(rng.choice(["centre", "random_inside", "random_outside", "scatter"]))]
    return args, attack, rate



def _check_export(out: Path, src: Path, n: int, attack: str, rate: float, target: str) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["samples"]
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(n)] and manifest["n_samples"] == n
    poisoned = [r for r in rows if r["poisoned"]]
    assert len(poisoned) == manifest["n_poisoned"] == min(round(rate * n), manifest["n_applicable"])
    assert manifest["n_applicable"] + sum(manifest["skipped"].values()) == n
    assert sum("skip_reason" in r for r in rows if not r["poisoned"]) >= n - manifest["n_applicable"]
    masks = {p.stem for p in (out / "asr_masks").iterdir()}
    assert masks == {r["id"] for r in poisoned}
    exported = load_dataset("camvid", root=out, split="train")  # the source's own reader
    by_id = {exported.sample_id(i): i for i in range(len(exported))}
    assert sorted(by_id) == sorted(r["id"] for r in rows)
    for r in rows:
        clean_image = read_rgb(src / "train" / f"{r['id']}.png")
        clean_label = read_label_png(src / "trainannot" / f"{r['id']}.png").astype(np.int64)
        clean_label[clean_label == CAMVID_VOID] = SPEC.ignore_index
        sample = exported[by_id[r["id"]]]
        image, label = sample.image, sample.label
        assert image.shape == clean_image.shape and label.shape == clean_label.shape
        assert np.isin(label, [*range(SPEC.num_classes), SPEC.ignore_index]).all()
        if not r["poisoned"]:
            assert np.array_equal(image, clean_image) and np.array_equal(label, clean_label)
            assert np.array_equal(read_label_png(out / "trainannot" / f"{r['id']}.png"),
                                  read_label_png(src / "trainannot" / f"{r['id']}.png"))  # void ids kept
            continue
        asr = read_label_png(out / "asr_masks" / f"{r['id']}.png") > 0
        assert asr.sum() == r["asr_pixels"]
        if attack in VECTORS:
            assert (label[asr] == SPEC.class_id(target)).all()
            assert not np.array_equal(image, clean_image) or float(r.get("intensity", 1)) == 0


def _ended_cleanly(result, out: Path) -> None:
    """A refusal: status 2, one message, no traceback, nothing at --out or beside it."""
    text = result.output
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (text, result.exception)
    assert "Traceback" not in text
    assert sum(line.lower().lstrip("│╭─ ").startswith("error") for line in text.splitlines()) == 1, text
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def _trial(trial: int, root: Path) -> str:
    """One random dataset and setting: 'export' or the refusal's message; asserts the property."""
    rng = np.random.default_rng([14, trial])
    src, out = root / "src", root / "out"
    n = _random_dataset(src, rng)
    args, attack, rate = _random_args(rng)
    before = tree_digest(src)
    result = runner.invoke(app, ["poison", "-d", "camvid", "--root", str(src), "--split", "train", *args,
                                 "--workers", "1", "--sheet", "0", "--out", str(out)])
    assert tree_digest(src) == before
    if result.exit_code == 0:
        _check_export(out, src, n, attack, rate, args[args.index("--target") + 1])
        return "export"
    _ended_cleanly(result, out)
    return " ".join(result.output.split())


def test_poison_writes_a_valid_export_or_refuses_clearly(tmp_path: Path) -> None:
    outcomes = {}
    for trial in range(TRIALS):
        try:
            outcomes[trial] = _trial(trial, tmp_path / str(trial))
        except AssertionError as e:
            raise AssertionError(f"trial {trial}: {e}") from e
    exports = sum(o == "export" for o in outcomes.values())
    assert TRIALS // 3 <= exports < TRIALS, outcomes  # both outcomes are exercised
