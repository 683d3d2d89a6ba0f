import numpy as np
import pytest

from badseg.attacks.placement import PLACEMENTS, box_counts


def test_box_counts_equals_direct_sum():
    rng = np.random.default_rng(1)
    mask = rng.random((23, 31)) < 0.6
    for bh, bw in ((1, 1), (4, 4), (5, 3)):
        got = box_counts(mask, bh, bw)
        want = np.array([[mask[r:r + bh, c:c + bw].sum() for c in range(31 - bw + 1)] for r in range(23 - bh + 1)])
        assert np.array_equal(got, want)


def _blob():
    region = np.zeros((60, 80), bool)
    region[10:40, 20:70] = True
    region[25:40, 20:35] = False  # a notch: non-convex
    return region


@pytest.mark.parametrize("name", ["centre", "random_inside", "scatter"])
def test_inside_placements_keep_whole_stamps_inside_and_disjoint(name):
    region = _blob()
    stamps = PLACEMENTS.get(name)(region, region, 6, 4, np.random.default_rng(3))
    assert isinstance(stamps, list) and len(stamps) == 4
    cover = np.zeros(region.shape, int)
    for s in stamps:
        assert region[s.top:s.top + s.size, s.left:s.left + s.size].all()
        cover[s.top:s.top + s.size, s.left:s.left + s.size] += 1
    assert cover.max() == 1


def test_centre_is_nearest_the_centroid():
    region = np.zeros((50, 50), bool)
    region[10:41, 5:46] = True
    (s,) = PLACEMENTS.get("centre")(region, region, 5, 1, np.random.default_rng(0))
    assert s.centre == pytest.approx((25.0, 25.0), abs=0.5)


def test_outside_placement_never_touches_the_victim():
    region = _blob()
    stamps = PLACEMENTS.get("random_outside")(region, region, 7, 3, np.random.default_rng(5))
    for s in stamps:
        assert not region[s.top:s.top + s.size, s.left:s.left + s.size].any()
        assert s.top >= 0 and s.left >= 0 and s.top + 7 <= 60 and s.left + 7 <= 80


def test_impossible_placement_returns_a_reason():
    region = np.zeros((30, 30), bool)
    region[5:9, 5:9] = True
    out = PLACEMENTS.get("centre")(region, region, 6, 1, np.random.default_rng(0))
    assert isinstance(out, str) and "no room" in out


def _parts() -> tuple[np.ndarray, list[np.ndarray]]:
    """A region of three disjoint parts (large, medium, too small for a 6-px stamp)."""
    region = np.zeros((60, 90), bool)
    parts = [np.zeros_like(region) for _ in range(3)]
    parts[0][5:55, 2:40] = True
    parts[1][30:45, 60:80] = True
    parts[2][5:9, 70:85] = True
    for part in parts:
        region |= part
    return region, parts


@pytest.mark.parametrize("seed", range(5))
def test_scatter_puts_a_stamp_in_every_part_that_can_hold_one(seed):
    region, parts = _parts()
    stamps = PLACEMENTS.get("scatter")(region, region, 6, 3, np.random.default_rng(seed))
    assert len(stamps) == 3
    per_part = [sum(bool(p[s.top:s.top + 6, s.left:s.left + 6].all()) for s in stamps) for p in parts]
    assert per_part[1] >= 1 and per_part[2] == 0 and sum(per_part) == 3


def test_scatter_is_deterministic_and_says_when_it_cannot_fit():
    region, _ = _parts()
    a = PLACEMENTS.get("scatter")(region, region, 6, 4, np.random.default_rng(9))
    b = PLACEMENTS.get("scatter")(region, region, 6, 4, np.random.default_rng(9))
    assert a == b
    out = PLACEMENTS.get("scatter")(region, region, 30, 2, np.random.default_rng(0))
    assert isinstance(out, str) and "no room" in out
