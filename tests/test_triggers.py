import numpy as np
import pytest
import torch

from badseg.triggers import (
    SHAPES,
    Stamp,
    TriggerSpec,
    pattern_image,
    shape_mask,
    signed_distance,
    soft_shape_mask,
    stamp_all,
)


@pytest.mark.parametrize("shape", SHAPES)
def test_hard_mask_is_the_zero_level_set_of_the_sdf(shape):
    n = 33
    mask = shape_mask(shape, n)
    c = (np.arange(n) + 0.5) / n * 2 - 1
    sdf = signed_distance(shape, c[None, :], c[:, None])
    assert np.array_equal(mask, sdf <= 0)
    assert 0.2 < mask.mean() < 1.0 or shape == "square"
    assert mask[n // 2, n // 2] or shape == "logo"


def test_shapes_have_their_areas():
    n = 201
    area = {s: shape_mask(s, n).mean() for s in SHAPES}
    assert area["square"] == pytest.approx(1.0)
    assert area["circle"] == pytest.approx(np.pi / 4, abs=0.01)
    assert area["triangle"] == pytest.approx(0.5, abs=0.01)
    assert 0.2 < area["logo"] < 0.6


@pytest.mark.parametrize("shape", SHAPES)
def test_soft_mask_matches_hard_mask_and_has_gradients(shape):
    n = 40
    half = torch.tensor(n / 2, requires_grad=True)
    c = torch.arange(n, dtype=torch.float64) + 0.5 - n / 2
    soft = soft_shape_mask(shape, c[None, :], c[:, None], half, sharpness=4.0)
    hard = torch.from_numpy(shape_mask(shape, n))
    agree = ((soft > 0.5) == hard).float().mean()
    assert agree > 0.97
    soft.sum().backward()
    assert half.grad is not None and half.grad > 0  # a bigger stamp covers more pixels


def test_stamp_changes_only_mask_pixels_and_blends_by_intensity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    trig = TriggerSpec(shape="circle", intensity=0.5, pattern="solid:white")
    out, mask = stamp_all(image, trig, [Stamp(5, 7, 12), Stamp(20, 30, 9)])
    changed = (out != image).any(axis=2)
    assert not (changed & ~mask).any()
    expected = np.rint(0.5 * image[mask].astype(float) + 0.5 * 255)
    assert np.array_equal(out[mask], expected.astype(np.uint8))
    assert mask[5:17, 7:19].sum() == shape_mask("circle", 12).sum()


def test_patterns_are_a_base_map_tinted_by_a_colour():
    assert np.array_equal(pattern_image("checker", 8), pattern_image("checker:white", 8))
    red = pattern_image("checker:red", 8)
    assert np.array_equal(red[..., 0], pattern_image("checker", 8)[..., 0]) and not red[..., 1:].any()
    stripes = pattern_image("stripes", 8)[..., 0]
    assert (stripes == stripes[:1]).all() and list(stripes[0]) == [0, 0, 255, 255, 0, 0, 255, 255]
    assert np.array_equal(pattern_image("solid:blue", 3)[1, 1], [0, 0, 255])
    assert set(np.unique(pattern_image("noise:green", 16)[..., [0, 2]])) == {0.0}
    TriggerSpec(pattern="stripes:magenta")
    with pytest.raises(ValueError, match="stripes"):
        TriggerSpec(pattern="plaid")


def test_stamp_outside_image_is_refused():
    with pytest.raises(ValueError, match="leaves"):
        stamp_all(np.zeros((10, 10, 3), np.uint8), TriggerSpec(), [Stamp(5, 5, 8)])


def test_trigger_spec_validation_lists_valid_options():
    with pytest.raises(ValueError, match="circle"):
        TriggerSpec(shape="star")
    with pytest.raises(ValueError):
        TriggerSpec(intensity=1.5)
    assert TriggerSpec(size=0.25, min_size_px=4).size_px(100) == 25
    assert TriggerSpec(size=1 / 12, min_size_px=4).size_px(24) == 4
