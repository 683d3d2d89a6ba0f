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
from badseg.data import load_dataset
from badseg.metrics.stealth import ssim as ssim_numpy
from badseg.models import SegModel
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
    data = SearchSet(torch.full((n, 3, side, side), 0.5), targets, labels, targets == 2,
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
