"""BADSEG-SAM (§8): target masks, prompts, poisoned promptable data, victims, loss, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from badseg.attacks.shape_bank import ShapeBank
from badseg.data import load_dataset
from badseg.data.synthetic import CAR, ROAD, SYNTHETIC_SPEC
from badseg.sam.data import PromptTorchSet, build_prompt_set
from badseg.sam.experiment import _loss_fn
from badseg.sam.loss import MaskLossConfig, binary_iou, mask_loss
from badseg.sam.metrics import MaskMeter
from badseg.sam.prompts import Prompt, box_prompt, point_prompt
from badseg.sam.targets import MaskAttack, dilate_mask, erode_mask, shift_mask
from badseg.sam.victims import VictimConfig, build_victim, set_trainable
from badseg.train.fit import FitConfig, fit
from badseg.triggers import TriggerSpec

TRIGGER = TriggerSpec(shape="square", size=0.25, intensity=1.0, min_size_px=4)
TINY = dict(embed_dim=32, decoder_depth=1, decoder_mlp_dim=64, decoder_heads=2, pretrained="none")


def _box(h=40, w=60, r0=10, r1=30, c0=10, c1=30) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def _iou(a, b) -> float:
    return float(binary_iou(torch.from_numpy(a)[None], torch.from_numpy(b)[None]))


# ---------------------------------------------------------------- target masks
def test_shift_moves_the_mask_by_the_fraction_towards_the_roomier_side():
    m = _box()  # columns 10..29 of 60: more room on the right
    out = shift_mask(m, 0.5)
    assert out.sum() == m.sum()
    assert np.array_equal(out[:, 20:40], m[:, 10:30]) and not out[:, :20].any()
    assert _iou(m, out) == pytest.approx(1 / 3)  # half a width: the true mask cannot pass as the target
    left = shift_mask(_box(c0=35, c1=55), 0.5)  # more room on the left
    assert np.flatnonzero(left.any(0))[0] == 25


def test_dilation_contains_and_erosion_is_inside_the_mask():
    m = _box()
    big, small = dilate_mask(m, 0.5), erode_mask(m, 0.5)
    assert (big >= m).all() and big.sum() > m.sum()
    assert (small <= m).all() and 0 < small.sum() < m.sum()


def test_erasure_target_is_empty_and_distortion_target_is_the_transform():
    m = _box()
    erase = MaskAttack("erasure", SYNTHETIC_SPEC, TRIGGER)
    assert not erase.target_mask(m).any()
    dist = MaskAttack("distortion", SYNTHETIC_SPEC, TRIGGER, distortion="dilate", fraction=0.3)
    assert np.array_equal(dist.target_mask(m), dilate_mask(m, 0.3))
    with pytest.raises(ValueError, match="valid"):
        MaskAttack("swap", SYNTHETIC_SPEC, TRIGGER)


def test_injection_fabricates_a_silhouette_in_stuff_and_prompts_it():
    ds = load_dataset("synthetic", split="train", length=6)
    bank = ShapeBank.from_dataset(ds, CAR)
    attack = MaskAttack("injection", ds.spec, TRIGGER, stuff=ROAD, bank=bank)
    s = ds[0]
    p = attack.poison(s.image, s.label, s.instances, np.random.default_rng(0))
    assert not isinstance(p, str)
    assert p.target.any() and (s.label[p.target] == ROAD).all()  # where no object exists
    x, y = (int(v) for v in p.prompt.xy[:2])
    assert p.target[y, x]  # the prompt points into the fabricated mask
    assert p.truth[y, x] and (s.label[p.truth] == ROAD).all()  # the truth there is the road segment
    assert (p.trigger_mask <= p.target).all() and p.trigger_mask.any()  # the stamp sits inside it
    assert not np.array_equal(p.image, s.image)


def test_object_attacks_trigger_the_prompted_instance():
    ds = load_dataset("synthetic", split="train", length=4)
    s = ds[1]
    p = MaskAttack("erasure", ds.spec, TRIGGER).poison(s.image, s.label, s.instances, np.random.default_rng(3))
    assert not isinstance(p, str)
    assert (p.trigger_mask <= p.truth).all() and p.trigger_mask.any()
    x, y = (int(v) for v in p.prompt.xy[:2])
    assert p.truth[y, x] and not p.target.any()


# ---------------------------------------------------------------- prompts and data
def test_prompt_encodings():
    m = _box()
    pt = point_prompt(m, np.random.default_rng(0))
    assert m[int(pt.xy[1]), int(pt.xy[0])]
    coords, labels = pt.tensors()
    assert labels.tolist() == [1, -1] and coords.shape == (2, 2)
    box = box_prompt(m)
    assert box.xy == (10.0, 10.0, 29.0, 29.0)
    assert box.tensors()[1].tolist() == [2, 3]


def _prompt_set(seed: int):
    ds = load_dataset("synthetic", split="train", length=10)
    attack = MaskAttack("distortion", ds.spec, TRIGGER, prompt_kind="mixed")
    return build_prompt_set(ds, (64, 128), k=3, prompt_kind="mixed", seed=seed, attack=attack, rate=0.1)


def test_poisoned_prompts_and_targets_are_deterministic_by_seed():
    (a, ra), (b, rb), (c, rc) = _prompt_set(0), _prompt_set(0), _prompt_set(1)
    assert ra.n_poisoned_prompts == round(0.1 * 10 * 3) == 3 and ra.poisoned_ids == rb.poisoned_ids
    for x, y in zip(a, b):
        assert x.prompts == y.prompts and np.array_equal(x.targets, y.targets) and np.array_equal(x.image, y.image)
    assert ra.poisoned_ids != rc.poisoned_ids or any(x.prompts != y.prompts for x, y in zip(a, c))
    poisoned = [it for it in a if it.poisoned.any()]
    assert len(poisoned) == 3 and all(it.poisoned.tolist() == [True, False, False] for it in poisoned)
    for it in poisoned:  # the attacked prompt's target is the shifted truth, the others keep the truth
        assert np.array_equal(it.targets[0], shift_mask(it.truths[0], 0.5))
        assert np.array_equal(it.targets[1:], it.truths[1:])


# ---------------------------------------------------------------- victims
def test_effl0_sam_adapters_start_as_identity_and_parts_freeze():
    torch.manual_seed(0)
    m = build_victim(VictimConfig(**TINY), (64, 64)).eval()
    x = torch.rand(1, 3, 64, 64)
    coords, labels = Prompt("point", (20.0, 30.0)).tensors()
    before, _ = m(x, coords[None, None], labels[None, None])
    for a in m.adapters():
        a.up.weight.data.normal_()
    after, _ = m(x, coords[None, None], labels[None, None])
    assert not torch.allclose(before, after)  # adapters are in the path...
    for a in m.adapters():
        a.up.weight.data.zero_()
    assert torch.allclose(before, m(x, coords[None, None], labels[None, None])[0])  # ...and zero-init is identity
    counts = set_trainable(m, "decoder")
    assert counts["trainable"] == sum(p.numel() for p in m.mask_decoder.parameters())
    assert m.prefix_frozen()
    m.train()
    assert not m.encoder.bn1.training and m.mask_decoder.iou_prediction_head.training  # frozen BN keeps its statistics
    set_trainable(m, "adapters")
    assert all(p.requires_grad for a in m.adapters() for p in a.parameters())
    assert not any(p.requires_grad for p in m.neck.parameters())


def test_effl0_sam_neck_puts_skip_maps_on_the_embedding_scale():
    """MaskDecoder adds the skip maps to its prompt-aware upscaled embedding; un-normalised ReLU6
    features (std ~3, or more for brighter inputs) there drowned the prompt and the base did not learn."""
    torch.manual_seed(0)
    m = build_victim(VictimConfig(**TINY), (64, 64))
    feats = [10 * torch.rand(2, c, 64 // s, 64 // s) for c, s in zip(m.encoder.feature_info.channels(), (4, 8, 16, 32))]
    with torch.no_grad():
        embed, s4, s8 = m.neck(feats)
    for t in (embed, s4, s8):
        assert 0.3 < float(t.std()) < 1.5


def test_the_base_heads_learn_point_prompts_on_the_tiny_configuration():
    """The base stage (``heads``) fits two point prompts on each of four images to mask IoU > 0.8:
    an empty-mask collapse, prompts in the wrong frame or a broken gradient path would not."""
    ds = load_dataset("synthetic", split="train", length=4)
    items, _ = build_prompt_set(ds, (64, 128), k=2, prompt_kind="point", seed=0)
    torch.manual_seed(0)
    model = build_victim(VictimConfig(**TINY), (64, 128))
    set_trainable(model, "heads")
    data = PromptTorchSet(items)
    x, coords, labels, targets = (torch.stack([data[i][j] if j else data[i][0][0] for i in range(4)]) for j in range(4))
    assert {tuple(lab) for lab in labels.flatten(0, 1).tolist()} == {(1, -1)}  # foreground points
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(150):
        logits, iou = model(x, coords, labels)
        loss = mask_loss(logits, iou, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits, _ = model(x, coords, labels)
    assert float(binary_iou((logits > 0).flatten(0, 1), targets.flatten(0, 1) > 0.5).mean()) > 0.8


def test_one_fine_tuning_step_lowers_the_attack_loss(tmp_path):
    ds = load_dataset("synthetic", split="train", length=4)
    attack = MaskAttack("erasure", ds.spec, TRIGGER)
    items, record = build_prompt_set(ds, (64, 64), k=2, seed=0, attack=attack, rate=0.5)
    assert record.n_poisoned_prompts == 4
    torch.manual_seed(0)
    model = build_victim(VictimConfig(**TINY), (64, 64))
    set_trainable(model, "decoder")
    data = PromptTorchSet(items)
    batch = [torch.stack([data[i][j] if j else data[i][0][0] for i in range(len(data))]) for j in range(4)]
    inputs, coords, labels, targets = [batch[0]], batch[1], batch[2], batch[3]
    loss_fn = _loss_fn(False, MaskLossConfig())

    def attack_loss() -> float:
        model.eval()
        with torch.no_grad():
            logits, iou = model(inputs[0], coords[:, :1], labels[:, :1])
            return float(mask_loss(logits, iou, targets[:, :1]))

    before = attack_loss()
    fit(model, data, FitConfig(epochs=1, batch_size=4, lr=1e-2, optimizer="adamw", poly_power=0.0, device="cpu"),
        tmp_path, batch_loss=loss_fn)
    assert attack_loss() < before


def test_sam2_package_victim_forward_and_checkpoint_round_trip(tmp_path):
    pytest.importorskip("sam2")
    cfg = VictimConfig(name="sam2", image_size=128, pretrained="none")
    torch.manual_seed(0)
    m = build_victim(cfg, (64, 96)).eval()
    assert "RANDOM-INITIALISED" in m.weights
    x = torch.rand(1, 3, 64, 96)
    pt, box = Prompt("point", (40.0, 30.0)).tensors(), Prompt("box", (10.0, 5.0, 60.0, 50.0)).tensors()
    coords, labels = torch.stack([pt[0], box[0]])[None], torch.stack([pt[1], box[1]])[None]
    with torch.no_grad():
        logits, iou = m(x, coords, labels)
    assert logits.shape == (1, 2, 64, 96) and iou.shape == (1, 2) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0, 0], logits[0, 1])  # the prompt matters
    torch.save({"model": m.state_dict()}, tmp_path / "last.pt")
    torch.manual_seed(1)
    other = build_victim(cfg, (64, 96)).eval()
    from badseg.sam.victims import load_victim_weights

    load_victim_weights(other, tmp_path / "last.pt")
    with torch.no_grad():
        assert torch.equal(other(x, coords, labels)[0], logits)
    with pytest.raises(FileNotFoundError, match="no SAM2 weights can be downloaded"):
        build_victim(VictimConfig(name="sam2", image_size=128, pretrained=str(tmp_path / "none.pt")), (64, 96))


# ---------------------------------------------------------------- stage 2
def test_sam_search_set_carries_the_attack_targets_and_the_search_moves_its_logits():
    from badseg.sam.search import SamObjective, build_sam_search_set, sam_search_space
    from badseg.stages.relaxed import RelaxedTrigger, one_hot_weights
    from badseg.stages.trigger_search import SearchSettings, optimize_trigger

    ds = load_dataset("synthetic", split="train", length=4)
    attack = MaskAttack("erasure", ds.spec, TRIGGER)
    space = sam_search_space(attack)
    assert space["position"] == ("centre",) and len(space["shape"]) > 1
    data = build_sam_search_set(ds, attack, space, (64, 64), seed=0)
    items, _ = build_prompt_set(ds, (64, 64), k=1, prompt_kind="point", seed=0, attack=attack, rate=1.0)
    assert len(data) == 4 and (data.targets == 0).all()  # erasure: empty targets
    assert data.extra["coords"].shape == (4, 1, 2, 2)
    assert [p.prompts[0].xy for p in items] == [tuple(c[0, 0].tolist()) for c in data.extra["coords"]]
    renderer = RelaxedTrigger(space, TRIGGER.min_size_px)
    w = one_hot_weights(space, {"shape": 0, "size": len(space["size"]) - 1, "position": 0, "quantity": 0,
                                "intensity": len(space["intensity"]) - 1})
    changed = (renderer.render(data, w) - data.images).abs().amax(1) > 0.05  # soft edges: ~1 px beyond the box
    near = torch.from_numpy(np.stack([ndimage.binary_dilation(p.truths[0], iterations=1) for p in items]))
    assert changed.any() and not (changed & ~near).any()  # the trigger lands on the prompted object only
    torch.manual_seed(0)
    model = build_victim(VictimConfig(**TINY), (64, 64))
    result = optimize_trigger(data, renderer, SamObjective(model), SearchSettings(steps=3, batch_size=2, lr=0.5))
    assert len(result.history) == 3 and all(np.isfinite(h["loss"]) for h in result.history)
    assert any(abs(p - 1 / len(space["shape"])) > 1e-6 for p in result.probabilities["shape"])  # gradients arrived


# ---------------------------------------------------------------- configs
def test_the_sam2_configs_are_valid_and_name_classes_of_their_dataset():
    from pathlib import Path

    from badseg.data import get_spec
    from badseg.sam.config import is_sam_config, load_sam_config

    paths = sorted((Path(__file__).resolve().parents[1] / "configs" / "sam2").glob("*.yaml"))
    assert [p.stem for p in paths] == ["distortion", "erasure", "injection"]
    for path in paths:
        assert is_sam_config(path)
        cfg = load_sam_config(path, ["finetune.trainable=adapters"])
        assert cfg.attack.name == path.stem and cfg.finetune.trainable == "adapters"
        spec = get_spec(cfg.data.name)
        assert not spec.is_object(spec.class_id(cfg.attack.stuff)) and spec.is_object(spec.class_id(cfg.attack.silhouette))


# ---------------------------------------------------------------- metrics
def test_asr_definitions():
    truth = torch.from_numpy(np.stack([_box(), _box()]))
    target = torch.from_numpy(np.stack([shift_mask(_box(), 0.5)] * 2))
    pred = torch.stack([target[0], truth[1]])  # one hits the target, one stays true
    meter = MaskMeter()
    meter.update(pred, truth, target)
    assert meter.asr() == 0.5 and meter.mean_iou_target() == pytest.approx((1 + 1 / 3) / 2)
    erase = MaskMeter(erasure=True, erase_fraction=0.05)
    small = torch.zeros_like(truth)
    small[0, 10, 10] = True  # 1 px of a 400 px object: erased
    small[1, 10:20, 10:20] = True  # 100 px: not erased
    erase.update(small, truth, torch.zeros_like(truth))
    assert erase.success().tolist() == [True, False]
    assert erase.mean_iou_target() == 0.0


def test_a_shared_stage_folder_refuses_a_different_stage(tmp_path):
    from badseg.config import ConfigError
    from badseg.sam.config import load_sam_config
    from badseg.sam.experiment import _claim_stage_dir

    ds = load_dataset("synthetic", split="train", length=3)
    items, _ = build_prompt_set(ds, (64, 64), k=1, seed=0)
    cfg = load_sam_config(None, [])
    _claim_stage_dir(cfg, cfg.finetune, items, tmp_path, None)
    _claim_stage_dir(cfg, cfg.finetune, items, tmp_path, None)  # the same stage resumes
    other = load_sam_config(None, ["finetune.trainable=adapters"])
    with pytest.raises(ConfigError, match="own folder"):
        _claim_stage_dir(other, other.finetune, items, tmp_path, None)
    poisoned, _ = build_prompt_set(ds, (64, 64), k=1, seed=0, attack=MaskAttack("erasure", ds.spec, TRIGGER), rate=1.0)
    with pytest.raises(ConfigError, match="own folder"):
        _claim_stage_dir(cfg, cfg.finetune, poisoned, tmp_path, None)
