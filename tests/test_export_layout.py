"""A poisoned export is a drop-in copy of its source: read back by the source's own reader it
equals the source on every unpoisoned sample, file for file and byte for byte, and on the
poisoned samples it holds the poisoned labels in the source's encoding (void ids unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_readers import BUILDERS, IDS

from badseg.build import attack_for, dataset_for
from badseg.config import load_config
from badseg.data import load_dataset
from badseg.data.io import read_label_png
from badseg.poisoning import export_poisoned, sample_rng

DROP_IN = [(b, i) for b, i in zip(BUILDERS, IDS) if i != "labpics"]


@pytest.mark.parametrize("build", [b for b, _ in DROP_IN], ids=[i for _, i in DROP_IN])
def test_export_read_back_by_the_source_reader_equals_the_source(tmp_path, build):
    t = build(tmp_path / "src")
    spec = load_dataset(t.name, root=t.root, split=t.split).spec
    cfg = load_config(None, values={
        "data": {"name": t.name, "root": str(t.root)}, "seed": 1,
        "attack": {"vector": "hba", "victim": spec.classes[0], "target": spec.classes[1], "rate": 0.67,
                   "rate_of": "applicable", "options": {"mode": "nto1", "line_width": 2}},
        "trigger": {"intensity": 1.0}})
    ds = dataset_for(cfg.data, t.split)
    attack = attack_for(cfg, ds)
    out = tmp_path / "out"
    manifest = export_poisoned(ds, attack, cfg.attack.rate, out, seed=cfg.seed, workers=1, source=t.root,
                               progress=False, rate_of="applicable")
    assert manifest["layout"] == "source" and json.loads((out / "manifest.json").read_text()) == manifest
    assert 0 < manifest["n_poisoned"] < manifest["n_samples"]  # both kinds of sample are checked
    back = load_dataset(t.name, root=out, split=t.split)
    assert [back.sample_id(i) for i in range(len(back))] == [ds.sample_id(i) for i in range(len(ds))]
    for i, row in enumerate(manifest["samples"]):
        src, got = ds.source_files(i)[1], back.source_files(i)[1]
        if not row["poisoned"]:
            for a, b in ((src.image, got.image), (src.label, got.label), (src.instances, got.instances)):
                assert (a is None) == (b is None) and (a is None or a.read_bytes() == b.read_bytes())
            assert np.array_equal(back[i].label, ds[i].label) and np.array_equal(back[i].image, ds[i].image)
            continue
        p = attack.poison(ds[i], sample_rng(cfg.seed, i))
        assert np.array_equal(back[i].label, p.label)  # the reader decodes the poisoned label exactly
        raw_src, raw_out = read_label_png(src.label), read_label_png(got.label)
        same = p.label == ds[i].label
        assert np.array_equal(raw_out[same], raw_src[same])  # every id the attack left alone, void too
        assert (ds[i].label == 255).any() and (raw_out[ds[i].label == 255] == raw_src[ds[i].label == 255]).all()
        diff = np.abs(back[i].image.astype(int) - p.image.astype(int))
        assert diff.max() == 0 if src.image.suffix == ".png" else diff.mean() < 3  # JPEG sources: quality 100
        assert (out / "asr_masks" / f"{row['id']}.png").is_file()


def test_badseg_layout_on_request(tmp_path):
    t = BUILDERS[0](tmp_path / "src")  # CamVid
    ds = load_dataset(t.name, root=t.root, split=t.split)
    cfg = load_config(None, values={"attack": {"vector": "hba", "victim": "sky", "target": "road", "rate": 1.0,
                                               "options": {"mode": "nto1", "line_width": 2}}})
    attack = attack_for(cfg, ds)
    manifest = export_poisoned(ds, attack, 1.0, tmp_path / "out", workers=1, source=t.root, progress=False,
                               layout="badseg")
    assert manifest["layout"] == "badseg" and not (tmp_path / "out" / "trainannot").exists()
    for i, row in enumerate(manifest["samples"]):
        assert row["label"] == f"labels/{row['id']}.png"
        label = read_label_png(tmp_path / "out" / row["label"])
        assert np.array_equal(label, attack.poison(ds[i], sample_rng(0, i)).label)  # class ids, 255 = ignore
