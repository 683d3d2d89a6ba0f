"""Invariants of the six BADSEG vectors on synthetic streets and on real CamVid."""

from __future__ import annotations

import numpy as np
import pytest

from badseg.attacks import Poisoned, ShapeBank, Skipped, VectorMismatch, build_attack
from badseg.data import get_spec, load_dataset
from badseg.attacks.placement import box_counts
from badseg.data.instances import object_instances
from badseg.poisoning import sample_rng, scan
from badseg.triggers import TriggerSpec

# (vector, victim, target, trigger) per dataset; sizes large enough for 128x256 / 360x480.
SYNTHETIC_CASES = [
    ("o2o", "car", "person", TriggerSpec("triangle", 1 / 4, 0.6)),
    ("o2b", "car", "road", TriggerSpec("circle", 1 / 4, 0.8)),
    ("b2o", "road", "car", TriggerSpec("circle", 1 / 4, 0.8)),
    ("b2b", "sidewalk", "road", TriggerSpec("triangle", 0.025, 0.6, quantity=5)),
    ("ins", "car", "road", TriggerSpec("square", 1 / 4, 0.8)),
    ("con", "car", "road", TriggerSpec("circle", 1 / 4, 0.8)),
]
CAMVID_CASES = [
    ("o2o", "car", "pedestrian", TriggerSpec("triangle", 1 / 4, 0.6)),
    ("o2b", "car", "road", TriggerSpec("circle", 1 / 4, 0.8)),
    ("b2o", "road", "car", TriggerSpec("circle", 1 / 4, 0.8)),
    ("b2b", "sidewalk", "road", TriggerSpec("triangle", 0.025, 0.6, quantity=5)),
    ("ins", "car", "road", TriggerSpec("square", 1 / 4, 0.8)),
    ("con", "car", "road", TriggerSpec("circle", 1 / 4, 0.8)),
]


def _attack(name, ds, victim, target, trigger):
    kw = {"bank": ShapeBank.from_dataset(ds, ds.spec.class_id(target), max_scan=40)} if name == "b2o" else {}
    return build_attack(name, ds.spec, victim, target, trigger, **kw)


def check_invariants(attack, sample, p: Poisoned) -> None:
    victim, target = attack.victim, attack.target
    old, new = sample.label, p.label
    changed = old != new
    # labels change only inside the ASR region, only to the target, only from the victim
    assert not (changed & ~p.asr_mask).any()
    assert (new[p.asr_mask] == target).all()
    assert (old[p.asr_mask] == victim).all()
    # a CON sample may hold decoys only (triggered non-matching cars that keep their label)
    assert p.asr_mask.any() or (attack.name == "con" and p.decoy_mask is not None)
    # the image changes only under the trigger mask; the mask is the union of the stamps
    img_changed = (p.image != sample.image).any(axis=2)
    assert not (img_changed & ~p.trigger_mask).any()
    boxes = np.zeros_like(p.trigger_mask)
    for s in p.record["stamps"]:
        t, l = s["top_left"]
        boxes[t:t + s["size_px"], l:l + s["size_px"]] = True
    assert not (p.trigger_mask & ~boxes).any()
    assert p.record["asr_pixels"] == int(p.asr_mask.sum())
    if attack.name in ("o2o", "o2b"):  # class map, stamp on the (largest) victim object
        assert np.array_equal(p.asr_mask, old == victim)
        assert (old[p.trigger_mask] == victim).all()
    if attack.name == "b2b":  # all victim pixels flip; stamps scattered on the victim stuff
        assert np.array_equal(p.asr_mask, old == victim)
        assert (old[p.trigger_mask] == victim).all()
        assert len(p.record["stamps"]) == attack.trigger.quantity
    if attack.name == "b2o":  # the fabricated region lies in the victim stuff and holds the trigger
        assert (old[p.trigger_mask] == victim).all()
        assert p.trigger_mask[p.asr_mask].sum() == p.trigger_mask.sum()
    if attack.name in ("ins", "con"):
        assert (old[p.trigger_mask] == victim).all()


@pytest.mark.parametrize("name,victim,target,trigger", SYNTHETIC_CASES, ids=[c[0] for c in SYNTHETIC_CASES])
def test_vectors_on_synthetic(synthetic, name, victim, target, trigger):
    attack = _attack(name, synthetic, victim, target, trigger)
    done = 0
    for i in range(len(synthetic)):
        s = synthetic[i]
        p = attack.poison(s, sample_rng(0, i))
        if isinstance(p, Skipped):
            assert p.reason
            continue
        check_invariants(attack, s, p)
        done += 1
    assert done >= len(synthetic) // 3


@pytest.mark.parametrize("name,victim,target,trigger", CAMVID_CASES, ids=[c[0] for c in CAMVID_CASES])
def test_vectors_on_camvid(camvid_root, name, victim, target, trigger):
    ds = load_dataset("camvid", root=camvid_root, split="val")
    attack = _attack(name, ds, victim, target, trigger)
    done = 0
    for i in range(0, len(ds), 10):
        s = ds[i]
        # few CamVid images hold a red car: CON's test mode (every car triggered) checks it on all
        p = attack.poison(s, sample_rng(0, i), test=name == "con")
        if isinstance(p, Poisoned):
            check_invariants(attack, s, p)
            done += 1
    assert done >= 3


def test_instance_attack_flips_only_the_chosen_instances(synthetic):
    attack = build_attack("ins", synthetic.spec, "car", "road", TriggerSpec("square", 1 / 4, 0.8), k=1)
    seen = 0
    for i in range(len(synthetic)):
        s = synthetic[i]
        cars = object_instances(s.label, s.instances, synthetic.spec, [synthetic.spec.class_id("car")], 64)
        p = attack.poison(s, sample_rng(0, i))
        if isinstance(p, Skipped) or len(cars) < 2:
            continue
        hit = [c for c in cars if (p.asr_mask & c.mask).any()]
        assert len(hit) == 1 and np.array_equal(p.asr_mask, hit[0].mask & (s.label == attack.victim))
        seen += 1
    assert seen >= 2


def test_conditional_attack_flips_red_cars_only(synthetic):
    spec = synthetic.spec
    attack = build_attack("con", spec, "car", "road", TriggerSpec("circle", 1 / 4, 0.8), condition="red")
    red_seen = decoy_seen = 0
    for i in range(len(synthetic)):
        s = synthetic[i]
        p = attack.poison(s, sample_rng(0, i), test=True)
        if isinstance(p, Skipped):
            continue
        colours = {d["id"]: d["colour"] for d in s.meta["instances"] if d["class"] == "car"}
        for region in p.record["regions"]:
            inst = region["instance_id"]
            mask = s.instances == inst
            if colours.get(inst) == "red":
                assert region["relabel"] and p.asr_mask[mask].all()
                red_seen += 1
            elif inst in colours:
                assert not region["relabel"] and not p.asr_mask[mask].any()
                assert p.decoy_mask is not None and p.decoy_mask[mask & (s.label == attack.victim)].all()
                decoy_seen += 1
    assert red_seen >= 2 and decoy_seen >= 2


def test_conditional_training_poisons_only_images_with_a_red_car(synthetic):
    spec = synthetic.spec
    attack = build_attack("con", spec, "car", "road", TriggerSpec("circle", 1 / 4, 0.8), condition="red",
                          decoy_rate=1.0)
    result = scan(synthetic, attack, seed=0)
    has_red = [any(d["class"] == "car" and d["colour"] == "red" for d in synthetic[i].meta["instances"])
               for i in range(len(synthetic))]
    assert any(has_red) and not all(has_red)
    for i, reason in enumerate(result.reasons):
        if not has_red[i]:
            assert reason is not None
            continue
        if reason is None:  # (a red car too small to hold the stamp is skipped with its reason)
            s = synthetic[i]
            p = attack.poison(s, sample_rng(0, i))
            colours = {d["id"]: d["colour"] for d in s.meta["instances"] if d["class"] == "car"}
            relabelled = {r["instance_id"]: r["relabel"] for r in p.record["regions"]}
            assert p.asr_mask.any() and any(relabelled.values())
            assert all(flip == (colours[inst] == "red") for inst, flip in relabelled.items())
    assert result.applicable
    assert "no car meeting the condition 'red'" in result.skip_counts()


@pytest.mark.parametrize("name,target", [("o2b", "road"), ("o2o", "person")])
def test_every_carrier_stamps_each_car_that_holds_a_stamp(synthetic, name, target):
    trigger = TriggerSpec("circle", 1 / 4, 0.8, min_size_px=6)
    one = build_attack(name, synthetic.spec, "car", target, trigger)
    every = build_attack(name, synthetic.spec, "car", target, trigger, carriers="all")
    several = 0
    for i in range(len(synthetic)):
        s = synthetic[i]
        p = every.poison(s, sample_rng(0, i))
        if isinstance(p, Skipped):
            assert isinstance(one.poison(s, sample_rng(0, i)), Skipped)  # no car can hold a stamp
            continue
        check_invariants(every, s, p)
        assert np.array_equal(p.asr_mask, s.label == every.victim)  # class map: every car flips
        cars = object_instances(s.label, s.instances, synthetic.spec, [every.victim], 64)
        stamped = {int(v) for v in np.unique(s.instances[p.trigger_mask]) if v}
        for car in cars:  # a car is stamped exactly when a whole stamp fits inside it
            size = trigger.size_px(car.width)
            fits = bool((box_counts(car.mask, size) == size * size).any())
            assert (car.instance_id in stamped) == fits
        several += len(stamped) > 1
    assert several >= 3


def test_same_seed_same_poison(synthetic):
    attack = build_attack("b2b", synthetic.spec, "sidewalk", "road", TriggerSpec("circle", 0.02, 0.5, quantity=5))
    a = attack.poison(synthetic[3], sample_rng(7, 3))
    b = attack.poison(synthetic[3], sample_rng(7, 3))
    c = attack.poison(synthetic[3], sample_rng(8, 3))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert a.record == b.record and a.record["stamps"] != c.record["stamps"]


def test_impossible_placement_is_skipped_with_reason(synthetic):
    huge = TriggerSpec("circle", 1 / 8, 0.5, min_size_px=500)
    attack = build_attack("o2b", synthetic.spec, "car", "road", huge)
    p = attack.poison(synthetic[0], sample_rng(0, 0))
    assert isinstance(p, Skipped) and "no room" in p.reason


def test_sample_without_victim_is_skipped(synthetic):
    s = synthetic[0]
    s.label[s.label == synthetic.spec.class_id("car")] = synthetic.spec.class_id("road")
    s.instances[:] = 0
    p = build_attack("o2b", synthetic.spec, "car", "road").poison(s, sample_rng(0, 0))
    assert isinstance(p, Skipped) and "car" in p.reason


@pytest.mark.parametrize("name,victim,target", [("o2b", "road", "car"), ("b2o", "car", "road"),
                                                ("b2b", "car", "road"), ("o2o", "car", "road"),
                                                ("o2b", "car", "car")])
def test_vector_kind_mismatch_is_explained(synthetic, name, victim, target):
    with pytest.raises(VectorMismatch, match="must be an? (object|stuff)|same class"):
        build_attack(name, synthetic.spec, victim, target)


def test_unknown_attack_lists_valid_names(synthetic):
    with pytest.raises(KeyError, match="o2b"):
        build_attack("o2x", synthetic.spec, "car", "road")


def test_an_option_the_attack_does_not_take_is_a_clear_error():
    spec = get_spec("camvid")
    with pytest.raises(ValueError, match=r"'placement'.*its options: .*line_width"):
        build_attack("hba", spec, "car", "road", placement="centre")
    with pytest.raises(ValueError, match="'k'"):
        build_attack("o2b", spec, "car", "road", k=3)
