"""Invariants of the prior attacks (HBA, IBA / NNI / PRL, OFBA, ConSeg) on synthetic streets and CamVid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from badseg.attacks import ATTACKS, Poisoned, Skipped, VectorMismatch, build_attack
from badseg.attacks.baselines import co_occurrence
from badseg.attacks.placement import in_band, influencer_positions, uniform_boxes, victim_distance
from badseg.build import attack_for, datasets_for
from badseg.cli import app
from badseg.config import load_config
from badseg.data import load_dataset
from badseg.poisoning import PoisonedTestSet, sample_rng
from badseg.triggers import TriggerSpec

BASELINES = ("hba", "iba", "iba-nni", "iba-prl", "ofba", "conseg")
IBA_TRIGGER = TriggerSpec("square", 0.06, 1.0)


@pytest.fixture(scope="module")
def camvid_val(camvid_root):
    ds = load_dataset("camvid", root=camvid_root, split="val")
    return [ds[i] for i in range(0, len(ds), 25)], ds.spec


def _poisoned(attack, samples, test=False):
    out = []
    for i, s in enumerate(samples):
        p = attack.poison(s, sample_rng(0, i), test=test)
        if isinstance(p, Poisoned):
            out.append((s, p))
        else:
            assert p.reason
    return out


def _image_changed(s, p):
    return (p.image != s.image).any(axis=2)


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(ATTACKS.names())


# ----------------------------------------------------------------------------- HBA
@pytest.mark.parametrize("row,intensity", [(0.0, 1.0), (0.5, 0.6), (1.0, 0.3)])
def test_hba_changes_only_the_line_blended_black(synthetic, row, intensity):
    spec = synthetic.spec
    trigger = TriggerSpec(intensity=intensity, pattern="solid:white")  # HBA's line is black whatever the pattern
    attack = build_attack("hba", spec, "car", "road", trigger, line_width=8, line_row=row)
    samples = [synthetic[i] for i in range(8)]
    done = _poisoned(attack, samples)
    assert len(done) >= 6
    for s, p in done:
        h = s.image.shape[0]
        top = round(row * (h - 8))
        line = np.zeros(s.label.shape, bool)
        line[top:top + 8] = True
        assert np.array_equal(p.trigger_mask, line)
        assert not (_image_changed(s, p) & ~line).any()
        want = np.clip(np.rint((1 - intensity) * s.image[line].astype(np.float32)), 0, 255).astype(np.uint8)
        assert np.array_equal(p.image[line], want)
        # 1→1: exactly the victim pixels become the target; nothing else changes
        victim = s.label == attack.victim
        assert np.array_equal(p.asr_mask, victim)
        assert np.array_equal(p.label, np.where(victim, attack.target, s.label))
        assert p.record["stamps"][0]["top_left"] == [top, 0]


def test_hba_relabelling_follows_the_attack_matrix(synthetic):
    spec = synthetic.spec
    matrix = {"person": "sidewalk", "truck": "road", "bus": "car"}
    attack = build_attack("hba", spec, "car", "road", TriggerSpec(intensity=1.0), mode="matrix", matrix=matrix)
    lut = np.arange(256)
    lut[spec.class_id("car")] = spec.class_id("road")
    for src, dst in matrix.items():
        lut[spec.class_id(src)] = spec.class_id(dst)
    done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))])
    assert len(done) >= 10
    others = 0
    for s, p in done:
        assert np.array_equal(p.label, lut[s.label])
        to_target = np.isin(s.label, [spec.class_id(c) for c in ("car", "truck")])
        assert np.array_equal(p.asr_mask, to_target)
        moved = (p.label != s.label) & ~to_target
        assert p.record["other_relabelled_pixels"] == int(moved.sum())
        others += int(moved.sum())
    assert others > 0  # the non-target pairs (person → sidewalk, bus → car) were exercised


def test_hba_n_to_1_relabels_every_labelled_pixel(synthetic):
    spec = synthetic.spec
    attack = build_attack("hba", spec, "car", "road", TriggerSpec(intensity=1.0), mode="nto1")
    s = synthetic[0].__class__(synthetic[0].image, synthetic[0].label.copy())
    s.label[:5, :7] = spec.ignore_index
    p = attack.poison(s, sample_rng(0, 0))
    labelled = s.label != spec.ignore_index
    assert (p.label[labelled] == attack.target).all() and (p.label[~labelled] == spec.ignore_index).all()
    assert np.array_equal(p.asr_mask, labelled & (s.label != attack.target))


def test_hba_semantic_trigger_leaves_the_image_and_needs_the_class(synthetic):
    spec = synthetic.spec
    attack = build_attack("hba", spec, "car", "road", trigger_class="wall")
    wall, car = spec.class_id("wall"), spec.class_id("car")
    seen = skipped = 0
    for i in range(len(synthetic)):
        s = synthetic[i]
        p = attack.poison(s, sample_rng(0, i))
        both = (s.label == wall).any() and (s.label == car).any()
        assert isinstance(p, Poisoned) == both
        if isinstance(p, Poisoned):
            assert np.array_equal(p.image, s.image) and not p.trigger_mask.any()
            assert np.array_equal(p.asr_mask, s.label == car)
            seen += 1
        else:
            skipped += 1
    assert seen >= 2 and skipped >= 1


def test_hba_rejects_a_contradictory_matrix(synthetic):
    with pytest.raises(ValueError, match="maps car"):
        build_attack("hba", synthetic.spec, "car", "road", mode="matrix", matrix={"car": "sidewalk"})
    with pytest.raises(ValueError, match="mode='matrix'"):
        build_attack("hba", synthetic.spec, "car", "road", matrix={"person": "road"})


def test_hba_on_camvid(camvid_val):
    samples, spec = camvid_val
    attack = build_attack("hba", spec, "car", "road", TriggerSpec(intensity=1.0))
    done = _poisoned(attack, samples)
    assert len(done) >= 3
    for s, p in done:
        assert not (_image_changed(s, p) & ~p.trigger_mask).any() and p.trigger_mask[:8].all()
        assert p.trigger_mask.sum() == 8 * s.label.shape[1]
        assert np.array_equal(p.label, np.where(s.label == attack.victim, attack.target, s.label))


# ----------------------------------------------------------------------------- IBA
def test_uniform_boxes_and_eligibility_equal_brute_force():
    rng = np.random.default_rng(4)
    label = np.repeat(np.repeat(rng.integers(0, 4, (6, 8)), 5, axis=0), 5, axis=1)  # 30x40 blocks
    label[rng.random(label.shape) < 0.01] = 255
    size, victim, band = 4, 2, (3.0, 9.0)
    dist = np.full(label.shape, np.inf)
    vr, vc = np.nonzero(label == victim)
    for r in range(label.shape[0]):
        for c in range(label.shape[1]):
            dist[r, c] = np.sqrt((vr - r) ** 2 + (vc - c) ** 2).min()
    eligible = influencer_positions(label, victim, size, band)
    assert np.allclose(victim_distance(label, victim), dist)
    for t in range(label.shape[0] - size + 1):
        for l in range(label.shape[1] - size + 1):
            values = np.unique(label[t:t + size, l:l + size])
            single = values.size == 1
            assert uniform_boxes(label, size)[t, l] == single
            d = dist[t + size // 2, l + size // 2]
            assert eligible[t, l] == (single and values[0] not in (victim, 255) and band[0] < d <= band[1])
    cheb = victim_distance(label, victim, "chessboard")
    assert cheb[0, 0] == min(max(abs(r), abs(c)) for r, c in zip(vr, vc))
    for lo, hi in ((0, 1), (0, 4.5), (2, 7), (6.5, 30)):  # dilation-based chessboard band == distance-based
        assert np.array_equal(in_band(label, victim, (lo, hi), "chessboard"), (cheb > lo) & (cheb <= hi))


def _check_iba_stamp(s, p, victim, ignore=255):
    (st,) = p.record["stamps"]
    t, l, n = *st["top_left"], st["size_px"]
    h, w = s.label.shape
    assert 0 <= t and 0 <= l and t + n <= h and l + n <= w  # inside the image
    box = s.label[t:t + n, l:l + n]
    assert np.unique(box).size == 1 and box[0, 0] not in (victim, ignore)  # one non-victim class
    assert not (p.trigger_mask & (s.label == victim)).any()
    assert not (_image_changed(s, p) & ~p.trigger_mask).any()
    assert np.array_equal(p.asr_mask, s.label == victim)
    return t + n // 2, l + n // 2


@pytest.mark.parametrize("name", ["iba", "iba-nni", "iba-prl"])
@pytest.mark.parametrize("test", [False, True])
def test_iba_stamp_is_on_one_non_victim_class(synthetic, name, test):
    attack = build_attack(name, synthetic.spec, "car", "road", IBA_TRIGGER)
    done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))], test=test)
    assert len(done) >= 12
    for s, p in done:
        _check_iba_stamp(s, p, attack.victim)


@pytest.mark.parametrize("pick", ["nearest", "random"])
def test_nni_centre_distance_lies_in_the_band(synthetic, pick):
    band = (5.0, 30.0)
    attack = build_attack("iba-nni", synthetic.spec, "car", "road", IBA_TRIGGER, band=band, pick=pick)
    done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))])
    assert len(done) >= 12
    dists = []
    for s, p in done:
        r, c = _check_iba_stamp(s, p, attack.victim)
        vr, vc = np.nonzero(s.label == attack.victim)
        d = np.sqrt((vr - r) ** 2 + (vc - c) ** 2).min()
        assert band[0] < d <= band[1]
        if pick == "nearest":  # no eligible position in the band is closer
            n = p.record["stamps"][0]["size_px"]
            eligible = influencer_positions(s.label, attack.victim, n, band)
            centre = ndimage.distance_transform_edt(s.label != attack.victim)[n // 2:, n // 2:]
            assert d == pytest.approx(centre[:eligible.shape[0], :eligible.shape[1]][eligible].min())
        dists.append(d)
    if pick == "random":
        assert np.std(dists) > 1.0


def test_iba_test_band_places_the_poisoned_test_set(synthetic):
    attack = build_attack("iba-prl", synthetic.spec, "car", "road", IBA_TRIGGER, test_band=(40, 70))
    done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))], test=True)
    assert len(done) >= 6
    for s, p in done:
        r, c = _check_iba_stamp(s, p, attack.victim)
        assert 40 < ndimage.distance_transform_edt(s.label != attack.victim)[r, c] <= 70


@pytest.mark.parametrize("q", [1, 100, 2000])
def test_prl_relabels_exactly_q_pixels_to_present_classes(synthetic, q):
    spec = synthetic.spec
    attack = build_attack("iba-prl", spec, "car", "road", IBA_TRIGGER, prl_pixels=q)
    done = _poisoned(attack, [synthetic[i] for i in range(10)])
    assert len(done) >= 5
    for s, p in done:
        victim = s.label == attack.victim
        assert (p.label[victim] == attack.target).all()
        noise = (p.label != s.label) & ~victim
        assert noise.sum() == q == p.record["other_relabelled_pixels"]
        present = set(np.unique(np.where(victim, attack.target, s.label)).tolist())
        assert set(np.unique(p.label[noise]).tolist()) <= present - {attack.victim}
        assert (s.label[noise] != spec.ignore_index).all()


def test_iba_on_camvid(camvid_val):
    samples, spec = camvid_val
    for name, kw in (("iba", {}), ("iba-nni", {"band": (0, 60)}), ("iba-prl", {"prl_pixels": 100})):
        attack = build_attack(name, spec, "car", "road", IBA_TRIGGER, **kw)
        done = _poisoned(attack, samples)
        assert len(done) >= 3, name
        for s, p in done:
            r, c = _check_iba_stamp(s, p, attack.victim)
            if name == "iba-nni":
                assert 0 < ndimage.distance_transform_edt(s.label != attack.victim)[r, c] <= 60
            if name == "iba-prl":
                assert ((p.label != s.label) & ~p.asr_mask).sum() == 100


# ----------------------------------------------------------------------------- OFBA
def _stamp_box(p):
    (st,) = [d for d in p.record["stamps"] if "size_px" in d]
    t, l, n = *st["top_left"], st["size_px"]
    return t, l, n


def test_ofba_stamp_lies_on_the_flipped_object(synthetic):
    spec = synthetic.spec
    attack = build_attack("ofba", spec, "car", "road", TriggerSpec("square", 1 / 4, 1.0))
    classes = set()
    for test in (False, True):
        done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))], test=test)
        assert len(done) >= 10
        for s, p in done:
            t, l, n = _stamp_box(p)
            (region,) = p.record["regions"]
            cls = region["class_id"]
            obj = s.label[t:t + n, l:l + n]
            assert (obj == cls).all() and spec.is_object(cls)
            assert cls == attack.victim or not test  # the test set triggers victim objects
            assert p.asr_mask[t:t + n, l:l + n].all()  # the stamped object is the one that flips
            assert (p.label[p.asr_mask] == attack.target).all() and (s.label[p.asr_mask] == cls).all()
            assert not ((p.label != s.label) & ~p.asr_mask).any()
            classes.add(cls)
    assert len(classes) >= 2  # object-free: training triggers more than the victim class


def test_ofba_victim_only_and_camvid(camvid_val):
    samples, spec = camvid_val
    attack = build_attack("ofba", spec, "car", "road", TriggerSpec("square", 1 / 4, 1.0), classes=["car"])
    done = _poisoned(attack, samples)
    assert len(done) >= 3
    for s, p in done:
        t, l, n = _stamp_box(p)
        assert (s.label[t:t + n, l:l + n] == attack.victim).all()
        assert (s.label[p.asr_mask] == attack.victim).all()
    with pytest.raises(VectorMismatch):
        build_attack("ofba", spec, "car", "road", classes=["sky"])


# ----------------------------------------------------------------------------- ConSeg
def test_conseg_rebuilds_target_context_inside_the_victim_object(synthetic):
    spec = synthetic.spec
    attack = build_attack("conseg", spec, "car", "road", TriggerSpec("circle", 1 / 4, 0.8), context_px=3)
    road = spec.class_id("road")
    done = _poisoned(attack, [synthetic[i] for i in range(len(synthetic))])
    assert len(done) >= 10
    for s, p in done:
        (region,) = p.record["regions"]
        inst = s.instances == region["instance_id"]
        car = inst & (s.label == attack.victim)
        assert not (_image_changed(s, p) & ~car).any()  # stamp and context stay on the object
        assert not (p.trigger_mask & ~car).any()
        ring = car & (ndimage.distance_transform_edt(car) <= 3)
        assert p.record["stamps"][-1]["pixels"] == int(ring.sum())
        t, l, n = _stamp_box(p)
        assert car[t:t + n, l:l + n].all()
        assert np.array_equal(p.label, np.where(s.label == attack.victim, road, s.label))
    s = synthetic[0].__class__(synthetic[0].image, np.where(synthetic[0].label == road, 1, synthetic[0].label))
    assert isinstance(attack.poison(s, sample_rng(0, 0)), Skipped)  # no co-occurring target: not applicable


def test_conseg_auto_target_is_the_most_co_occurring_class(camvid_root):
    ds = load_dataset("camvid", root=camvid_root, split="val")
    scores = co_occurrence(ds, ds.spec.class_id("car"))
    assert scores.sum() == pytest.approx(1.0) and scores[ds.spec.class_id("car")] == 0
    cfg = load_config(None, values={"attack": {"vector": "conseg", "victim": "car", "target": "auto"},
                                    "trigger": {"shape": "circle", "size": 1 / 4, "intensity": 0.8}})
    attack = attack_for(cfg, ds)
    assert attack.target == int(np.argmax(scores)) and ds.spec.classes[attack.target] == "road"


# ----------------------------------------------------------------------------- wiring
@pytest.mark.parametrize("name", BASELINES)
def test_scan_and_poison_agree_and_are_deterministic(synthetic, name):
    """The label-only scan finds exactly the samples poison() can poison (DESIGN §5)."""
    attack = build_attack(name, synthetic.spec, "car", "road", TriggerSpec("square", 0.2, 0.8))
    test_set = PoisonedTestSet(synthetic, attack, seed=3)
    assert len(test_set) >= 6
    for k in range(len(test_set)):
        _, p = test_set[k]
        assert p.asr_mask.any()
    i = test_set.indices[0]
    a, b = (attack.poison(synthetic[i], sample_rng(3, i)) for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and a.record == b.record
    json.dumps(attack.describe())


def test_config_options_reach_the_attack(synthetic):
    cfg = load_config(None, ["data.train_length=8", "data.test_length=4", "attack.vector=iba-nni",
                             "attack.options.band=[10, 40]", "attack.options.test_band=[40, 80]",
                             "attack.options.pick=random"])
    train, _ = datasets_for(cfg)
    attack = attack_for(cfg, train)
    assert (attack.placement.band, attack.placement.test_band, attack.placement.pick) == ((10, 40), (40, 80), "random")
    cfg = load_config(None, ["data.train_length=8", "attack.vector=hba", "attack.options.mode=matrix",
                             "attack.options.matrix={person: sidewalk}", "attack.options.line_width=4"])
    attack = attack_for(cfg, datasets_for(cfg)[0])
    assert attack.render.width_px == 4 and attack.relabel_extra.pairs == ((11, 1),)


def test_old_flat_attack_keys_still_load_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="attack.options"):
        old = load_config(None, ["attack.vector=hba", "attack.hba_mode=matrix", "attack.matrix={person: sidewalk}",
                                 "attack.line_width=4", "attack.condition=red", "attack.k=0"])
    new = load_config(None, ["attack.vector=hba", "attack.options.mode=matrix",
                             "attack.options.matrix={person: sidewalk}", "attack.options.line_width=4"])
    assert old == new  # condition and k are not HBA's options: ignored, as before
    with pytest.warns(DeprecationWarning):
        ins = load_config(None, ["attack.vector=ins", "attack.k=0"])
    assert ins.attack.options["k"] is None  # the old 'k: 0' meant every instance


def test_cli_poisons_with_a_baseline(tmp_path):
    out = tmp_path / "p"
    result = CliRunner().invoke(app, ["poison", "-d", "synthetic", "--attack", "iba-prl", "--victim", "car",
                                      "--target", "road", "--out", str(out), "--rate", "0.5", "--limit", "8",
                                      "--shape", "square", "--size", "0.06", "--prl-pixels", "50",
                                      "--test-band", "0,90", "--workers", "1", "--sheet", "0"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["placement"]["test_band"] == [0.0, 90.0] and manifest["relabel_extra"]["pixels"] == 50
    poisoned = [r for r in manifest["samples"] if r["poisoned"]]
    assert poisoned and all(r["other_relabelled_pixels"] == 50 for r in poisoned)
    bad = CliRunner().invoke(app, ["poison", "-d", "synthetic", "--attack", "iba", "--victim", "car", "--target",
                                   "road", "--out", str(tmp_path / "q"), "--band", "60", "--limit", "2"])
    assert bad.exit_code == 2 and "L,U" in bad.output

