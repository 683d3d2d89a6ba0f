"""The ``cover`` placement: the trigger's texture over the selected region itself."""

from __future__ import annotations

import numpy as np
import pytest

from badseg.attacks import Poisoned, build_attack
from badseg.data.instances import object_instances
from badseg.triggers import TriggerSpec, cover, tiled_pattern


def _first_poisoned(attack, dataset) -> tuple:
    for i in range(len(dataset)):
        sample = dataset[i]
        p = attack.poison(sample, np.random.default_rng(i))
        if isinstance(p, Poisoned):
            return sample, p
    raise AssertionError("no sample was poisoned")


def test_cover_blends_the_tiled_texture_over_the_mask_only():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), bool)
    mask[5:30, 10:50] = True
    trig = TriggerSpec(intensity=0.25, pattern="checker")
    out = cover(image, trig, mask, tile_px=8)
    assert np.array_equal(out[~mask], image[~mask])
    texture = tiled_pattern("checker", 8, (40, 56))
    expected = np.clip(np.rint(0.75 * image.astype(np.float32) + 0.25 * texture), 0, 255).astype(np.uint8)
    assert np.array_equal(out[mask], expected[mask])
    # the texture's phase is the image's: it repeats every tile, and cells are a quarter tile
    assert np.array_equal(texture[:, :8], texture[:, 8:16]) and np.array_equal(texture[:8], texture[8:16])
    assert texture[0, 0, 0] != texture[0, 2, 0]


@pytest.mark.parametrize("vector,victim", [("o2b", "car"), ("b2b", "sidewalk")])
def test_every_relabelled_pixel_of_a_large_enough_region_carries_the_trigger(synthetic, vector, victim):
    """So any crop of the image that keeps a relabelled pixel keeps the trigger on it, which
    stamps cannot do (docs/results.md, "Why crops kill the faint O2B backdoor")."""
    options = {"carriers": "all"} if vector == "o2b" else {}
    attack = build_attack(vector, synthetic.spec, victim, "road",
                          TriggerSpec(size=0.01, intensity=0.2, min_size_px=8), placement="cover", **options)
    sample, p = _first_poisoned(attack, synthetic)
    small = np.zeros_like(p.asr_mask)
    if vector == "o2b":
        kept = object_instances(sample.label, sample.instances, synthetic.spec, [attack.victim], 64)
        small = p.asr_mask & ~np.any([o.mask for o in kept], axis=0)
    assert (p.asr_mask & ~small).any()
    assert not (p.asr_mask & ~small & ~p.trigger_mask).any()
    assert not ((p.image != sample.image).any(axis=2) & ~p.trigger_mask).any()
    # the trigger lies on victim pixels only, and changes most of them
    assert (sample.label[p.trigger_mask] == attack.victim).all()
    assert (p.image != sample.image).any(axis=2)[p.trigger_mask].mean() > 0.5
    assert [d["tile_px"] for d in p.record["stamps"]] == [8] * len(p.record["stamps"])


def test_cover_is_described_and_leaves_stamps_to_the_other_placements(synthetic):
    covered = build_attack("o2b", synthetic.spec, "car", "road", TriggerSpec(), placement="cover")
    stamped = build_attack("o2b", synthetic.spec, "car", "road", TriggerSpec())
    assert covered.describe()["render"] == "render_cover"
    assert "render" not in stamped.describe()
    _, p = _first_poisoned(stamped, synthetic)
    assert "top_left" in p.record["stamps"][0]


def test_small_regions_get_their_own_intensity_under_cover(synthetic):
    """``trigger.small_intensity``: each car below ``small_area_px`` is blended at it, the others at
    ``intensity``; each region's pixels change by exactly its own blend."""
    plain = TriggerSpec(size=0.01, intensity=0.1, min_size_px=8)
    areas = None
    for i in range(len(synthetic)):
        sample = synthetic[i]
        cars = object_instances(sample.label, sample.instances, synthetic.spec, [synthetic.spec.class_id("car")], 64)
        sizes = sorted(int(o.mask.sum()) for o in cars)
        if len(set(sizes)) > 1:
            areas = sizes
            break
    assert areas is not None, "no synthetic image with two cars of different sizes"
    cut = areas[0] + 1  # only the smallest car is "small"
    boosted = TriggerSpec(size=0.01, intensity=0.1, min_size_px=8, small_intensity=0.4, small_area_px=cut)
    assert boosted.intensity_for(cut - 1) == 0.4 and boosted.intensity_for(cut) == 0.1
    runs = {}
    for name, trig in (("plain", plain), ("boosted", boosted)):
        attack = build_attack("o2b", synthetic.spec, "car", "road", trig, placement="cover", carriers="all")
        runs[name] = attack.poison(sample, np.random.default_rng(0))
    drawn = runs["boosted"].record["stamps"]
    assert sorted(d["intensity"] for d in drawn) == sorted(0.4 if d["cover_pixels"] < cut else 0.1 for d in drawn)
    assert {d["intensity"] for d in runs["plain"].record["stamps"]} == {0.1}
    for o in cars:
        alpha = boosted.intensity_for(int(o.mask.sum()))
        texture = tiled_pattern("checker", 8, sample.label.shape)
        want = np.clip(np.rint((1 - alpha) * sample.image.astype(np.float32) + alpha * texture), 0, 255)
        assert np.array_equal(runs["boosted"].image[o.mask], want.astype(np.uint8)[o.mask])
    # the large cars are drawn exactly as without the rule; the labels never depend on it
    large = np.any([o.mask for o in cars if o.mask.sum() >= cut], axis=0)
    assert np.array_equal(runs["boosted"].image[large], runs["plain"].image[large])
    assert np.array_equal(runs["boosted"].label, runs["plain"].label)


@pytest.mark.parametrize("bad", [{"small_intensity": 0.3}, {"small_area_px": 100},
                                 {"small_intensity": 1.5, "small_area_px": 100}])
def test_small_intensity_needs_its_area_and_a_valid_value(bad):
    with pytest.raises(ValueError, match="small_"):
        TriggerSpec(**bad)


def test_small_intensity_is_refused_outside_the_cover_placement():
    from badseg.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="small_intensity applies to attack.options.placement: cover"):
        load_config(None, ["trigger.small_intensity=0.3", "trigger.small_area_px=1000"])
    cfg = load_config(None, ["trigger.small_intensity=0.3", "trigger.small_area_px=1000",
                             "attack.options.placement=cover"])
    assert cfg.trigger.intensity_for(999) == 0.3


def test_an_attack_built_directly_refuses_small_intensity_on_stamps(synthetic):
    """The rule holds for ``build_attack`` callers too, not only for configs: stamps would leave it unused."""
    trigger = TriggerSpec(size=0.1, intensity=0.1, small_intensity=0.3, small_area_px=1000)
    with pytest.raises(ValueError, match="small_intensity.*placement 'centre'"):
        build_attack("o2b", synthetic.spec, "car", "road", trigger=trigger, placement="centre")
    cover = build_attack("o2b", synthetic.spec, "car", "road", trigger=trigger, placement="cover")
    assert cover.trigger.intensity_for(999) == 0.3
