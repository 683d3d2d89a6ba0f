"""BADSEG stage 2: Gumbel-Softmax sampling, the relaxed trigger (eq. 4), the objective (eq. 3 +
stealth), and the optimiser recovering a planted optimum."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from badseg.attacks import build_attack
from badseg.build import attack_for
from badseg.config import load_config
from badseg.data import load_dataset
from badseg.data.resize import resize_pair
from badseg.metrics.stealth import ssim as ssim_numpy
from badseg.models import SegModel
from badseg.poisoning.dataset import sample_rng
from badseg.stages import (
    ATTRIBUTES,
    LearnabilityObjective,
    RelaxedTrigger,
    SearchSet,
    SearchSettings,
    SurrogateObjective,
    augment_batch,
    build_search_set,
    gumbel_softmax_sample,
    one_hot_weights,
    optimize_trigger,
    search_space,
    split_search_set,
    ssim,
    sweep_options,
    temperature,
)
from badseg.stages.auto import with_search_result
from badseg.stages.trigger_search import SearchResult, load_search_result, write_search_outputs

load_search_result_dict = SearchResult.from_dict
from badseg.train.augment import AugmentConfig
from badseg.triggers import TRIGGER_GRIDS, Stamp, TriggerSpec, split_pattern, stamp_all

SIZE = (64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def streets():
    return load_dataset("synthetic", split="train", length=12)


@pytest.fixture(scope="module")
def o2b(streets):
    attack = build_attack("o2b", streets.spec, "car", "road")
    space = search_space(attack)
    return attack, space, build_search_set(streets, attack, space, SIZE, seed=0, limit=8)


class _Contrast(nn.Module):
    """Local contrast of the grey image (|Laplacian|, box-blurred), one channel at stride 1."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        grey = feats[-1].mean(1, keepdim=True)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
        return F.avg_pool2d(F.conv2d(grey, lap, padding=1).abs(), 5, stride=1, padding=2)


def contrast_surrogate(num_classes: int, target: int, gain: float = 20.0) -> SegModel:
    """A fixed "surrogate" whose target-class logit grows with local contrast (others 0): a
    checker trigger on victim pixels lowers eq. 3's loss there and raises it elsewhere."""
    head = nn.Conv2d(1, num_classes, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[target] = gain
        head.bias[target] = -2.0
    return SegModel(_Identity(), _Contrast(), head, feature_stride=1, size_divisor=1, mean=(0, 0, 0), std=(1, 1, 1),
                    name="contrast")


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def tiny_net(num_classes: int) -> SegModel:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())

    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = enc

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [x, self.body(x)]

    class Dec(nn.Module):
        def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
            return feats[-1]

    return SegModel(Enc(), Dec(), nn.Conv2d(8, num_classes, 1), feature_stride=2, size_divisor=2, name="tiny")


# --- sampling and schedule ---------------------------------------------------------------------


def test_gumbel_sample_is_torch_gumbel_softmax_with_an_explicit_generator():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0])
    for seed in range(3):
        torch.manual_seed(seed)
        expected = F.gumbel_softmax(logits, tau=0.7, hard=False)
        got = gumbel_softmax_sample(logits, 0.7, torch.Generator().manual_seed(seed))
        assert torch.allclose(got, expected, atol=1e-6)
    a = gumbel_softmax_sample(logits, 0.5, torch.Generator().manual_seed(9))
    b = gumbel_softmax_sample(logits, 0.5, torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and abs(float(a.sum()) - 1) < 1e-6


def test_temperature_anneals_geometrically_towards_one_hot():
    taus = [temperature(t, 50, 2.0, 0.2) for t in range(50)]
    assert taus[0] == pytest.approx(2.0) and taus[-1] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(taus, taus[1:]))
    assert taus[25] == pytest.approx(2.0 * 0.1 ** (25 / 49))
    sample = gumbel_softmax_sample(torch.tensor([0.0, 3.0, 0.0]), taus[-1], torch.Generator().manual_seed(0))
    assert float(sample.max()) > 0.9


# --- the relaxed trigger -----------------------------------------------------------------------


def test_search_space_is_table_20(streets):
    o2b = search_space(build_attack("o2b", streets.spec, "car", "road"))
    assert {a: o2b[a] for a in TRIGGER_GRIDS["o2b"]} == TRIGGER_GRIDS["o2b"]
    b2b = search_space(build_attack("b2b", streets.spec, "sidewalk", "road"))
    assert b2b["position"] == ("scatter",) and b2b["quantity"] == (1, 3, 5, 7, 10)
    assert search_space(build_attack("ins", streets.spec, "car", "person"))["size"] == TRIGGER_GRIDS["o2o"]["size"]


@pytest.mark.parametrize("shape, pattern", [("circle", "checker"), ("square", "checker"), ("triangle", "checker"),
                                            ("logo", "checker"), ("square", "stripes:red"), ("circle", "noise:cyan"),
                                            ("square", "solid:yellow")])
def test_one_hot_relaxed_trigger_is_the_hard_stamp(streets, shape, pattern):
    """With one-hot weights eq. 4 is poisoning's own blend, up to the soft mask edge — also for
    a pattern and colour picked from the searched ones."""
    attack = build_attack("o2b", streets.spec, "car", "road")
    space = search_space(attack, "search")
    data = build_search_set(streets, attack, space, (128, 256), seed=0, limit=6)  # native size: scale 1
    base, colour = split_pattern(pattern)
    chosen = {"shape": space["shape"].index(shape), "size": 4, "position": 0, "quantity": 0, "intensity": 6,
              "pattern": space["pattern"].index(base), "colour": space["colour"].index(colour)}
    out = RelaxedTrigger(space).render(data, one_hot_weights(space, chosen))
    spec = TriggerSpec(shape=shape, size=space["size"][4], intensity=0.8, pattern=pattern)
    for n in range(len(data)):
        cy, cx = data.centres[n, 0, 4, 0].tolist()
        px = spec.size_px(float(data.ref_width[n, 0, 4, 0]))
        image = np.rint(data.images[n].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        hard, mask = stamp_all(image, spec, [Stamp(round(cy - (px - 1) / 2), round(cx - (px - 1) / 2), px)])
        soft = out[n].permute(1, 2, 0).numpy() * 255
        diff = np.abs(hard.astype(float) - soft)
        assert diff.mean() < 0.5, diff.mean()  # the whole image
        deep = ndimage.binary_erosion(mask, iterations=2)
        if deep.any():  # same pattern and alpha (a miss is ~200)
            assert np.percentile(diff[deep], 99) < 8.0
        assert np.percentile(diff[~ndimage.binary_dilation(mask, iterations=2)], 99) < 1e-3  # untouched
        change_soft = np.abs(soft - image).sum()
        change_hard = np.abs(hard.astype(float) - image).sum()
        assert abs(change_soft / change_hard - 1) < 0.25  # the soft edge neither adds nor loses much


@pytest.mark.parametrize("kind", ["frozen", "learnability"])
def test_gradients_reach_every_attribute(o2b, streets, kind):
    """Every attribute's logits, pattern and colour included, get a gradient from either objective."""
    attack, _, data = o2b
    space = search_space(attack, "search")
    assert all(len(space[a]) > 1 for a in ATTRIBUTES)
    renderer = RelaxedTrigger(space)
    model = tiny_net(streets.spec.num_classes)
    if kind == "frozen":
        objective = SurrogateObjective(model, stealth_weight=1.0, psnr_min=60.0)
    else:
        finetune, data = split_search_set(data, 0.5, seed=0)
        objective = LearnabilityObjective(model, finetune, renderer, AugmentConfig((0.5, 1.5), SIZE, 0.5),
                                          stealth_weight=1.0, psnr_min=60.0)
    logits = {a: torch.zeros(len(space[a]), requires_grad=True) for a in ATTRIBUTES}
    gen = torch.Generator().manual_seed(0)
    weights = {a: gumbel_softmax_sample(logits[a], 1.0, gen) for a in ATTRIBUTES}
    if kind == "learnability":
        before = [p.detach().clone() for p in objective.model.parameters()]
        objective.update(weights)
        assert any(not torch.equal(a, b) for a, b in zip(before, objective.model.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), tiny_net(streets.spec.num_classes)
                                                     .parameters()))  # the stage-1 surrogate is untouched
    batch = data.batch([0, 1, 2, 3])
    terms = objective(renderer.render(batch, weights), batch)
    terms["loss"].backward()
    for a in ATTRIBUTES:
        g = logits[a].grad
        assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0, a
    assert float(terms["stealth"].detach()) > 0 and float(terms["attack"].detach()) > 0


def test_ssim_matches_the_stealth_metric():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(2, 40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, size=a.shape), 0, 255).astype(np.uint8)
    ta, tb = (torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255 for x in (a, b))
    got = ssim(ta, tb)
    for i in range(2):
        assert float(got[i]) == pytest.approx(ssim_numpy(a[i], b[i]), abs=1e-6)
    assert float(ssim(ta, ta).min()) == pytest.approx(1.0)


# --- the optimiser -----------------------------------------------------------------------------


class _PlanAware(RelaxedTrigger):
    """Remembers the stamp plan of the last render, so the planted objective compares triggers
    at the same stamp positions (positions depend on the sampled size option)."""

    def render(self, batch, weights, plan_size=None):
        self.plan = int(torch.argmax(weights["size"])) if plan_size is None else plan_size
        return super().render(batch, weights, plan_size)


@pytest.mark.parametrize("planted", [
    {"shape": "triangle", "size": 1 / 6, "position": "centre", "quantity": 3, "intensity": 0.7},
    {"shape": "square", "size": 1 / 6, "position": "outside_object", "quantity": 4, "intensity": 0.5},
])
def test_optimizer_recovers_a_planted_optimum(o2b, planted):
    """Objective: L1 distance to the trigger with the planted options; its unique minimum is
    the planted option of every attribute, which must end up the most probable."""
    _, space, data = o2b
    renderer = _PlanAware(space)
    target = one_hot_weights(space, {a: space[a].index(v) for a, v in planted.items()})

    def objective(triggered, batch):
        plan = renderer.plan
        with torch.no_grad():
            reference = renderer.render(batch, target, plan_size=plan)
        renderer.plan = plan
        return {"loss": (triggered - reference).abs().mean() * 100}

    result = optimize_trigger(data, renderer, objective, SearchSettings(steps=150, batch_size=4, seed=0))
    assert {a: result.chosen[a] for a in planted} == planted
    for a, v in planted.items():
        assert int(np.argmax(result.probabilities[a])) == space[a].index(v)
    assert result.probabilities["shape"][space["shape"].index(planted["shape"])] > 0.8
    assert result.history[0]["tau"] == pytest.approx(2.0) and result.history[-1]["tau"] == pytest.approx(0.2)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_stealth_budget_trades_attack_strength_for_psnr(o2b, streets):
    """The contrast surrogate rewards large opaque triggers (eq. 3 alone: ~25 dB); with the
    35 dB budget the search picks a fainter trigger that meets it, at a higher attack loss."""
    attack, space, data = o2b
    model = contrast_surrogate(streets.spec.num_classes, attack.target)
    settings = SearchSettings(steps=60, batch_size=4, seed=0)
    found = {}
    for weight in (0.0, 1.0):
        objective = SurrogateObjective(model, stealth_weight=weight, psnr_min=35.0)
        result = optimize_trigger(data, RelaxedTrigger(space), objective, settings)
        with torch.no_grad():
            triggered = RelaxedTrigger(space).render(data, one_hot_weights(space, result.chosen_index))
            terms = objective(triggered, data)
        found[weight] = (result, float(terms["psnr"]), float(terms["attack"]))
    (free, psnr_free, ce_free), (budget, psnr_budget, ce_budget) = found[0.0], found[1.0]
    assert psnr_free < 35.0 <= psnr_budget
    assert ce_free < ce_budget  # stealth costs attack strength on the surrogate
    assert budget.chosen["intensity"] < free.chosen["intensity"]
    assert space["size"].index(budget.chosen["size"]) <= space["size"].index(free.chosen["size"])
    assert free.chosen["position"] != "outside_object"  # triggers off the car do not help eq. 3


def test_outputs_round_trip_and_give_a_usable_trigger(o2b, streets, tmp_path):
    attack, space, data = o2b
    objective = SurrogateObjective(contrast_surrogate(streets.spec.num_classes, attack.target))
    renderer = RelaxedTrigger(space)
    result = optimize_trigger(data, renderer, objective, SearchSettings(steps=6, batch_size=2, seed=1))
    sweep = sweep_options(result, data, renderer, objective, n_images=2)
    assert [len(sweep[a]) for a in ATTRIBUTES] == [len(space[a]) for a in ATTRIBUTES]
    js, png = write_search_outputs(result, tmp_path, title="test", extra={"vector": "o2b"})
    d = json.loads(js.read_text())
    assert d["vector"] == "o2b" and set(d["chosen"]) == set(ATTRIBUTES) and len(d["history"]) == 6
    assert d["probabilities"]["size"].keys() == {"1/12", "1/10", "1/8", "1/6", "1/4", "1/2"}
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in d["probabilities"].values())
    assert png.is_file() and png.stat().st_size > 10_000
    again = load_search_result(js)
    assert again.chosen == result.chosen and again.placement == result.placement
    trigger = again.trigger()
    poisoned = build_attack("o2b", streets.spec, "car", "road", trigger, placement=again.placement)
    assert poisoned.trigger.shape == result.chosen["shape"] and trigger.pattern == "checker"
    old = {k: v for k, v in d.items()}  # a file written before pattern and colour were attributes
    for key in ("options", "probabilities", "chosen"):
        old[key] = {a: v for a, v in d[key].items() if a not in ("pattern", "colour")}
    old["settings"] = {**d["settings"], "pattern": "solid:red"}
    assert load_search_result_dict(old).trigger().pattern == "solid:red"


def test_searched_pattern_and_colour_make_the_trigger_pattern(o2b):
    attack, _, data = o2b
    space = search_space(attack, "search")
    assert space["pattern"] == ("checker", "noise", "solid", "stripes") and "red" in space["colour"]
    fixed = search_space(attack, "stripes:blue")
    assert fixed["pattern"] == ("stripes",) and fixed["colour"] == ("blue",)
    redder = torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)  # loss falls as R rises and G, B fall: red wins

    def objective(triggered, batch):
        return {"loss": ((triggered - batch.images) * redder).sum()}

    result = optimize_trigger(data, RelaxedTrigger(space), objective, SearchSettings(steps=25, batch_size=2, seed=0))
    assert result.chosen["colour"] == "red" and result.trigger().pattern.endswith(":red")


def test_b2b_search_keeps_its_scatter_placement(streets):
    attack = build_attack("b2b", streets.spec, "sidewalk", "road")
    space = search_space(attack)
    data = build_search_set(streets, attack, space, SIZE, seed=0, limit=4)
    assert data.valid.shape[1] == 1 and data.valid.shape[3] == 10  # one position, up to 10 stamps
    model = contrast_surrogate(streets.spec.num_classes, attack.target)
    result = optimize_trigger(data, RelaxedTrigger(space), SurrogateObjective(model),
                              SearchSettings(steps=4, batch_size=2))
    assert result.placement == "scatter" and result.probabilities["position"] == [1.0]
    assert result.chosen["quantity"] in (1, 3, 5, 7, 10)


# --- the learnability-aware objective ----------------------------------------------------------


def _planted_pattern_world(n: int = 8, side: int = 32):
    """Grey 32×32 images, a 12×12 victim box relabelled to the target, one 6-px square stamp at
    its centre; the only searched attribute is the pattern: a 1-px checker (what a frozen
    contrast-loving surrogate prefers) or a solid patch. A victim that halves every image
    (scale 0.5, antialiased) averages the checker's cells away: only the solid patch survives."""
    space = {"shape": ("square",), "size": (0.5,), "position": ("centre",), "quantity": (1,), "intensity": (0.8,),
             "pattern": ("checker", "solid"), "colour": ("white",)}
    labels = torch.full((n, side, side), 255, dtype=torch.long)
    labels[:, 10:22, 10:22] = 1
    targets = torch.where(labels == 1, 2, labels)
    one = (n, 1, 1, 1)
    data = SearchSet(torch.full((n, 3, side, side), 0.5), targets, labels, targets == 2, torch.zeros(n, side, side),
                     centres=torch.full((*one, 2), 15.5), ref_width=torch.full(one, 12.0),
                     rank=torch.zeros(one, dtype=torch.long), valid=torch.ones(one, dtype=torch.bool),
                     scale=torch.ones(n, 2), ids=[str(i) for i in range(n)])
    return space, data


def test_victim_augmentation_erases_the_fine_checker_but_not_the_solid_patch():
    space, data = _planted_pattern_world()
    renderer = RelaxedTrigger(space)
    halve = AugmentConfig((0.5, 0.5), None, 0.0)
    change = {}
    for k, name in enumerate(space["pattern"]):
        triggered = renderer.render(data, one_hot_weights(space, {"pattern": k}))
        seen, _ = augment_batch(triggered, [], halve, torch.Generator())
        change[name] = (float((triggered - 0.5).abs().sum()), float((seen - 0.5).abs().sum()))
    assert change["checker"][0] > 0.8 * change["solid"][0]  # at native size the checker changes as many pixels
    assert change["checker"][1] < 0.1 * change["solid"][1]  # after the victim's halving it is nearly gone


def test_learnability_objective_picks_what_the_victim_can_learn():
    """Planted pair: the frozen contrast surrogate (eq. 3) prefers the checker, which the
    victim's augmentation averages away; the learnability-aware search, which fine-tunes the
    same surrogate on poisoned, augmented images and scores held-out augmented images, picks
    the solid patch."""
    space, data = _planted_pattern_world()
    model = contrast_surrogate(3, 2)
    settings = SearchSettings(steps=30, batch_size=4, seed=0)
    frozen = optimize_trigger(data, RelaxedTrigger(space), SurrogateObjective(model, stealth_weight=0.0), settings)
    renderer = RelaxedTrigger(space)
    finetune, held_out = split_search_set(data, 0.5, seed=0)
    assert set(finetune.ids).isdisjoint(held_out.ids) and len(finetune) + len(held_out) == len(data)
    objective = LearnabilityObjective(model, finetune, renderer, AugmentConfig((0.5, 0.5), None, 0.0),
                                      stealth_weight=0.0, seed=0)
    learned = optimize_trigger(held_out, renderer, objective, settings)
    assert frozen.chosen["pattern"] == "checker" and frozen.probabilities["pattern"][0] > 0.7
    assert learned.chosen["pattern"] == "solid" and learned.probabilities["pattern"][1] > 0.7
    assert all(np.isfinite(h["finetune"]) for h in learned.history)


def test_augment_batch_keeps_image_and_maps_aligned():
    """Crop + flip at scale 1: every output pixel's label and ASR flag are its image pixel's own."""
    gen = torch.Generator().manual_seed(3)
    label = torch.randint(0, 10, (4, 20, 24))
    asr = label % 3 == 0
    image = (label.float() / 10)[:, None].expand(-1, 3, -1, -1)
    out, (lab, flag) = augment_batch(image, [label, asr], AugmentConfig((1.0, 1.0), (12, 16), 0.5), gen)
    assert out.shape == (4, 3, 12, 16) and lab.shape == flag.shape == (4, 12, 16) and flag.dtype == torch.bool
    assert torch.equal(torch.round(out[:, 0] * 10).long(), lab) and torch.equal(flag, lab % 3 == 0)
    big, (padded,) = augment_batch(image, [label], AugmentConfig((1.0, 1.0), (24, 24), 0.0), gen)
    assert big.shape == (4, 3, 24, 24) and (padded[:, 20:] == 255).all() and (big[:, :, 20:] == 0).all()


# --- the cover placement as a position option (search.cover) ----------------------------------


def _index_of(dataset, sample_id: str) -> int:
    return next(i for i in range(len(dataset)) if dataset[i].id == sample_id)


@pytest.fixture(scope="module")
def o2b_cover(streets):
    """Every car carries the trigger (several regions of different widths, so different tiles)."""
    attack = build_attack("o2b", streets.spec, "car", "road", carriers="all")
    space = search_space(attack, "search", cover=True)
    return attack, space


def test_cover_joins_the_position_options_and_places_no_stamps(streets, o2b_cover):
    attack, space = o2b_cover
    assert space["position"] == ("centre", "on_object", "outside_object", "cover")
    assert search_space(attack)["position"] == ("centre", "on_object", "outside_object")  # off by default
    b2b = build_attack("b2b", streets.spec, "sidewalk", "road")
    assert search_space(b2b, cover=True)["position"] == ("scatter", "cover")
    data = build_search_set(streets, attack, space, SIZE, seed=0, limit=6)
    assert not data.valid[:, 3].any() and data.valid[:, 0].any()  # cover slots stay empty, stamps are planned
    assert data.cover.shape == data.asr.shape and (data.cover > 0).any()
    assert ((data.cover > 0) == data.asr).float().mean() > 0.99  # carriers=all: the cover is the relabelled cars
    assert len(torch.unique(data.cover[data.cover > 0])) > 2  # one width per car


@pytest.mark.parametrize("size, pattern", [((128, 256), "checker"), ((64, 128), "checker"),
                                           ((64, 128), "stripes:red"), ((128, 256), "noise:cyan")])
def test_one_hot_cover_render_is_the_hard_cover_poisoning(streets, o2b_cover, size, pattern):
    """With one-hot weights on cover, the relaxed render is ``attack.poison`` under the cover
    placement resized as the search set is (native size and half size), and nothing changes
    outside the cover mask; shape and quantity play no part."""
    attack, space = o2b_cover
    data = build_search_set(streets, attack, space, size, seed=0, limit=5)
    base, colour = split_pattern(pattern)
    chosen = {"shape": 1, "size": 4, "position": 3, "quantity": 2, "intensity": 5,
              "pattern": space["pattern"].index(base), "colour": space["colour"].index(colour)}
    renderer = RelaxedTrigger(space)
    out = renderer.render(data, one_hot_weights(space, chosen))
    other = renderer.render(data, one_hot_weights(space, {**chosen, "shape": 3, "quantity": 4}))
    assert torch.equal(out, other)
    spec = TriggerSpec(size=space["size"][4], intensity=space["intensity"][5], pattern=pattern)
    covered = build_attack("o2b", streets.spec, "car", "road", spec, placement="cover", carriers="all")
    tiles = set()
    for n, sid in enumerate(data.ids):
        i = _index_of(streets, sid)
        p = covered.poison(streets[i], sample_rng(0, i))
        tiles |= {d["tile_px"] for d in p.record["stamps"]}
        hard, _ = resize_pair(p.image, p.label, size)
        image = np.rint(data.images[n].permute(1, 2, 0).numpy() * 255)
        soft = out[n].permute(1, 2, 0).numpy() * 255
        diff = np.abs(hard.astype(float) - soft)
        mask = data.cover[n].numpy() > 0
        assert diff.mean() < 1.0, diff.mean()  # mostly rounding; at half size the resized edge differs
        inside = ndimage.binary_erosion(mask, iterations=2)
        assert diff[inside].mean() < 0.5 and np.percentile(diff[inside], 99) < 1.5  # same texture, phase and alpha
        assert np.abs(soft - image)[~mask].max() < 1e-3  # nothing outside the cover
        assert np.abs(soft - image)[mask].mean() > 10  # the texture is there (intensity 0.7)
    assert len(tiles) > 1  # each car's own tile


def test_soft_cover_weight_scales_the_cover_blend(streets, o2b_cover):
    """``w_position`` mixes the cover with the stamps as it mixes stamp positions: half the weight,
    half the blend on cover pixels away from the stamps."""
    attack, space = o2b_cover
    data = build_search_set(streets, attack, space, SIZE, seed=0, limit=4)
    renderer = RelaxedTrigger(space)
    chosen = {"shape": 0, "size": 2, "position": 3, "quantity": 0, "intensity": 3, "pattern": 0, "colour": 0}
    full = renderer.render(data, one_hot_weights(space, chosen))
    w = one_hot_weights(space, chosen)
    w["position"] = torch.tensor([0.0, 0.0, 0.5, 0.5])  # half outside_object stamps, half cover
    half = renderer.render(data, w)
    stamps = (renderer.render(data, one_hot_weights(space, {**chosen, "position": 2})) != data.images).any(1)
    away = (data.cover > 0) & ~stamps
    assert away.any()
    assert torch.allclose((half - data.images).permute(0, 2, 3, 1)[away],
                          0.5 * (full - data.images).permute(0, 2, 3, 1)[away], atol=1e-6)


@pytest.mark.parametrize("kind", ["frozen", "learnability"])
def test_gradients_of_both_objectives_reach_the_cover_option(streets, o2b_cover, kind):
    """Stealth off, so the only path is the surrogate's loss: it sees the cover blend, and the
    gradient reaches the cover's sampled weight (zero were the cover not rendered) and logit."""
    attack, space = o2b_cover
    data = build_search_set(streets, attack, space, SIZE, seed=0, limit=8)
    renderer = RelaxedTrigger(space)
    model = tiny_net(streets.spec.num_classes)
    if kind == "frozen":
        objective = SurrogateObjective(model, stealth_weight=0.0)
    else:
        finetune, data = split_search_set(data, 0.5, seed=0)
        objective = LearnabilityObjective(model, finetune, renderer, AugmentConfig((0.5, 1.5), SIZE, 0.5),
                                          stealth_weight=0.0)
    logits = {a: torch.zeros(len(space[a]), requires_grad=True) for a in ATTRIBUTES}
    weights = {a: gumbel_softmax_sample(logits[a], 1.0, torch.Generator().manual_seed(1)) for a in ATTRIBUTES}
    for w in weights.values():
        w.retain_grad()
    if kind == "learnability":
        objective.update(weights)
    batch = data.batch([0, 1, 2, 3])
    assert (batch.cover > 0).any()
    objective(renderer.render(batch, weights), batch)["loss"].backward()
    cover = space["position"].index("cover")
    assert float(weights["position"].grad[cover].abs()) > 0
    assert float(logits["position"].grad[cover].abs()) > 0 and torch.isfinite(logits["position"].grad).all()


class _GlobalContrast(nn.Module):
    """The image's largest local contrast at every pixel: a trigger anywhere in the view is seen
    everywhere, so what a victim can learn depends only on whether its crop keeps the trigger."""

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        local = _Contrast()(feats)
        return local.amax(dim=(2, 3), keepdim=True).expand_as(local)


def _planted_crop_world(n: int = 8, side: int = 64):
    """Grey 64×64 images, all victim (relabelled to the target); position is the only searched
    attribute: one 8-px checker stamp at the centre, or the checker tiled over the whole image
    (cover, same tile, same intensity). A victim that crops 12×12 views keeps the centred stamp
    in about one view in eight, the cover in every one."""
    space = {"shape": ("square",), "size": (0.125,), "position": ("centre", "cover"), "quantity": (1,),
             "intensity": (0.5,), "pattern": ("checker",), "colour": ("white",)}
    labels = torch.ones((n, side, side), dtype=torch.long)
    targets = torch.full_like(labels, 2)
    slots = (n, 2, 1, 1)
    data = SearchSet(torch.full((n, 3, side, side), 0.5), targets, labels, targets == 2,
                     torch.full((n, side, side), float(side)), centres=torch.full((*slots, 2), (side - 1) / 2),
                     ref_width=torch.full(slots, float(side)), rank=torch.zeros(slots, dtype=torch.long),
                     valid=torch.tensor([True, False]).view(1, 2, 1, 1).expand(slots).clone(),
                     scale=torch.ones(n, 2), ids=[str(i) for i in range(n)])
    return space, data


def test_learnability_objective_prefers_the_cover_a_cropping_victim_keeps():
    """Planted pair: a surrogate that starts blind to every trigger (the frozen objective cannot
    choose: its gradient is zero), fine-tuned on poisoned 12×12 crops, learns the cover (always in
    the crop) and not the centred stamp (rarely in it), and the learnability search picks cover.
    Without the crop the same search keeps the stamp: the crop is what decides."""
    space, data = _planted_crop_world()
    head = nn.Conv2d(1, 3, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    model = SegModel(_Identity(), _GlobalContrast(), head, feature_stride=1, size_divisor=1, mean=(0, 0, 0),
                     std=(1, 1, 1), name="global-contrast")
    settings = SearchSettings(steps=40, batch_size=4, seed=0)
    frozen = optimize_trigger(data, RelaxedTrigger(space), SurrogateObjective(model, stealth_weight=0.0), settings)
    assert frozen.probabilities["position"] == pytest.approx([0.5, 0.5])
    finetune, held_out = split_search_set(data, 0.5, seed=0)
    chosen = {}
    for name, augment in (("crop", AugmentConfig((0.75, 1.25), (12, 12), 0.5)),
                          ("whole", AugmentConfig((1.0, 1.0), None, 0.5))):
        renderer = RelaxedTrigger(space)
        objective = LearnabilityObjective(model, finetune, renderer, augment, lr=0.05, stealth_weight=0.0, seed=0)
        chosen[name] = optimize_trigger(held_out, renderer, objective, settings)
    learned = chosen["crop"]
    assert learned.chosen["position"] == "cover" and learned.probabilities["position"][1] > 0.7
    assert learned.placement == "cover"
    assert chosen["whole"].chosen["position"] == "centre"


def test_a_chosen_cover_becomes_the_victims_placement(streets):
    """``trigger: auto`` writes the search's position into ``attack.options.placement``, cover
    included, so the victim is poisoned with ``render_cover``; a single position option (B2B
    without ``search.cover``) leaves the configured placement."""
    cfg = load_config(None, ["data.name=synthetic", "trigger=auto", "search.cover=true", "attack.vector=b2b",
                             "attack.victim=sidewalk", "attack.target=road"])
    attack = build_attack("b2b", streets.spec, "sidewalk", "road")
    for cover, placement in ((True, "cover"), (False, "scatter")):
        space = search_space(attack, cover=cover)
        chosen = {a: space[a][-1] for a in ATTRIBUTES}
        result = SearchResult(space, {a: [1.0 / len(space[a])] * len(space[a]) for a in ATTRIBUTES}, chosen, [])
        resolved = with_search_result(cfg, result)
        assert result.placement == placement and resolved.trigger == result.trigger()
        assert resolved.attack.options["placement"] == placement
        victim = attack_for(resolved, streets)
        assert victim.placement == placement and victim.trigger.size == space["size"][-1]
        assert (victim.describe().get("render") == "render_cover") == cover
