"""Every registered attack (``ATTACKS.names()``), built through the config path, keeps the
engine's invariants — as timm tests every registered model. A new attack is covered here
without adding anything; it only has to fit one of ``PAIRS`` on synthetic streets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from badseg.attacks import ATTACK_BUILD_ARGS, ATTACKS, Poisoned, Skipped, VectorMismatch
from badseg.build import attack_for
from badseg.config import load_config
from badseg.poisoning import sample_rng

#: (victim, target) pairs tried in order; the first that fits the attack's vector is used.
PAIRS = (("car", "road"), ("car", "person"), ("road", "car"), ("sidewalk", "road"))
N = 12


def _build(name, dataset):
    for victim, target in PAIRS:
        cfg = load_config(None, values={"attack": {"vector": name, "victim": victim, "target": target},
                                        "trigger": {"shape": "square", "size": 0.06, "intensity": 0.8}})
        try:
            return attack_for(cfg, dataset)
        except VectorMismatch:
            continue
    raise AssertionError(f"{name} fits none of {PAIRS} on synthetic streets")


def _check(attack, sample, p: Poisoned) -> None:
    h, w = sample.label.shape
    assert p.image.dtype == np.uint8 and p.image.shape == sample.image.shape
    assert p.label.dtype == np.int64 and p.label.shape == (h, w)
    assert p.asr_mask.dtype == bool and p.trigger_mask.dtype == bool and p.asr_mask.shape == (h, w)
    assert (p.label[p.asr_mask] == attack.target).all()
    if attack.relabel_extra is None:  # labels change only inside the ASR region
        assert not ((p.label != sample.label) & ~p.asr_mask).any()
    assert not ((p.image != sample.image).any(axis=2) & ~p.trigger_mask).any()
    if p.decoy_mask is not None:
        assert not (p.decoy_mask & p.asr_mask).any()
    assert p.record["asr_pixels"] == int(p.asr_mask.sum())
    json.dumps(p.record)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_registered_attack_keeps_the_invariants(synthetic, name):
    options = ATTACKS.options(name, ATTACK_BUILD_ARGS)
    assert all(p.default is not p.empty for p in options.values()), "every option has a default"
    assert ATTACKS.check_options(name, ATTACKS.check_options(name, {}, ATTACK_BUILD_ARGS), ATTACK_BUILD_ARGS) \
        == ATTACKS.check_options(name, {}, ATTACK_BUILD_ARGS)
    attack = _build(name, synthetic)
    assert attack.name == name
    json.dumps(attack.describe())
    poisoned = {False: 0, True: 0}
    for test in (False, True):
        for i in range(N):
            s = synthetic[i]
            p = attack.poison(s, sample_rng(5, i), test=test)
            reason = attack.applies(s.label, s.instances, sample_rng(5, i), test=test,
                                    image=s.image if attack.needs_image else None)
            assert reason == (p.reason if isinstance(p, Skipped) else None), "applies() agrees with poison()"
            if isinstance(p, Skipped):
                assert p.reason
                continue
            _check(attack, s, p)
            again = attack.poison(s, sample_rng(5, i), test=test)
            assert np.array_equal(again.image, p.image) and np.array_equal(again.label, p.label)
            assert again.record == p.record
            poisoned[test] += 1
    assert poisoned[False] > 0 and poisoned[True] > 0, poisoned
