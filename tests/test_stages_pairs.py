"""BADSEG stage 3: class centres, normalised distances, the pair ranking and rank agreement."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy import stats

from badseg.data import get_spec
from badseg.data.types import IGNORE_INDEX
from badseg.stages import (
    batch_centres,
    choose_pair,
    class_centres,
    distance_matrix,
    rank_agreement,
    rank_pairs,
    suitable_vectors,
)
from badseg.stages.pair_ranking import ClassCentres, load_distances, write_pair_outputs


class _PooledImage:
    """A stand-in surrogate: ``features`` = the image average-pooled by 2 (D = 3, stride 2)."""

    def eval(self) -> _PooledImage:
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 2)


def _direct_centres(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Loops over feature pixels; the label of feature pixel (i, j) is the input pixel at its
    centre, (s·i + s/2, s·j + s/2) for stride s (nearest neighbour)."""
    n, d, h, w = features.shape
    s = labels.shape[1] // h
    sums, counts = np.zeros((num_classes, d)), np.zeros(num_classes)
    for b, i, j in itertools.product(range(n), range(h), range(w)):
        c = labels[b, s * i + s // 2, s * j + s // 2]
        if c != IGNORE_INDEX:
            sums[c] += features[b, :, i, j]
            counts[c] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.0)


def test_batch_centres_match_a_direct_computation():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 5, 3, 4))
    labels = np.kron(rng.integers(0, 4, size=(2, 3, 4)), np.ones((1, 4, 4), dtype=np.int64))  # stride 4 blocks
    labels[0, :4, :4] = IGNORE_INDEX  # one feature pixel ignored
    centres, counts = batch_centres(torch.from_numpy(feats), torch.from_numpy(labels), num_classes=5)
    assert np.allclose(centres.numpy(), _direct_centres(feats, labels, 5))
    assert counts.tolist() == [int((labels[:, 2::4, 2::4] == c).sum()) for c in range(5)]
    assert counts[4] == 0 and np.all(centres[4].numpy() == 0)


def test_class_centres_average_the_per_batch_centres():
    """§5.3 global averaging: the mean of per-batch centres, over the batches holding the class."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((4, 3, 8, 8))).float()
    y = torch.from_numpy(np.kron(rng.integers(0, 3, size=(4, 4, 4)), np.ones((1, 2, 2), dtype=np.int64)))
    y[2:][y[2:] == 2] = 0  # class 2 only in the first batch
    y[:, 0, :] = IGNORE_INDEX
    batches = [(x[:2], y[:2]), (x[2:], y[2:])]
    got = class_centres(_PooledImage(), batches, num_classes=4)
    per_batch = [batch_centres(torch.nn.functional.avg_pool2d(a, 2), b, 4) for a, b in batches]
    expected = [(per_batch[0][0][c] + per_batch[1][0][c]) / 2 for c in (0, 1)] + [per_batch[0][0][2]]
    assert np.allclose(got.centres[:3], torch.stack(expected).numpy())
    assert np.isnan(got.centres[3]).all() and got.present.tolist() == [True, True, True, False]
    assert got.batches == 2 and got.n_images == 4
    assert got.images.tolist() == [int(sum((y[i] == c).any() for i in range(4))) for c in range(4)]


def test_distances_are_symmetric_zero_on_the_diagonal_and_normalised():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 16))
    centres[4] = np.nan  # an absent class
    dist = distance_matrix(centres)
    direct = np.array([[np.linalg.norm(centres[i] - centres[j]) for j in range(6)] for i in range(6)])
    ok = np.isfinite(direct)
    assert np.allclose(dist[ok], direct[ok] / direct[ok].max())
    assert np.allclose(dist[ok], dist.T[ok]) and np.all(np.diag(dist)[[0, 1, 2, 3, 5]] == 0)
    assert np.nanmax(dist) == pytest.approx(1.0) and np.isnan(dist[4]).all() and np.isnan(dist[:, 4]).all()


def test_ranking_and_suitable_vectors_follow_the_class_kinds():
    spec = get_spec("camvid")  # sky stuff, building stuff, pole object, road stuff, ... car object
    rng = np.random.default_rng(3)
    dist = distance_matrix(rng.normal(size=(spec.num_classes, 8)))
    ranking = rank_pairs(dist, spec)
    assert len(ranking) == spec.num_classes * (spec.num_classes - 1) // 2
    assert [p.rank for p in ranking] == list(range(1, len(ranking) + 1))
    assert all(a.distance <= b.distance for a, b in zip(ranking, ranking[1:]))
    car, road, ped, sidewalk = (spec.class_id(c) for c in ("car", "road", "pedestrian", "sidewalk"))
    assert suitable_vectors(spec, car, ped) == ("o2o",)
    assert suitable_vectors(spec, car, road) == suitable_vectors(spec, road, car) == ("o2b", "b2o")
    assert suitable_vectors(spec, sidewalk, road) == ("b2b",)


def _centres_with(spec, close: tuple[str, str], pixels: dict[str, int], images: dict[str, int]) -> ClassCentres:
    c = np.arange(spec.num_classes, dtype=float)[:, None] * np.array([[10.0, 0.0]])
    a, b = (spec.class_id(n) for n in close)
    c[b] = c[a] + 0.5  # the closest pair
    px = np.full(spec.num_classes, 100)
    im = np.full(spec.num_classes, 50)
    for n, v in pixels.items():
        px[spec.class_id(n)] = v
    for n, v in images.items():
        im[spec.class_id(n)] = v
    return ClassCentres(c, px, im, batches=5, n_images=50)


def test_choose_pair_takes_the_closest_pair_that_fits_the_vector():
    spec = get_spec("camvid")
    centres = _centres_with(spec, ("car", "road"), {"road": 5000, "car": 300}, {})
    ranking = rank_pairs(distance_matrix(centres.centres), spec)
    o2b = choose_pair(ranking, spec, "o2b", centres)
    assert (o2b.victim, o2b.target, o2b.pair.rank) == ("car", "road", 1)
    b2o = choose_pair(ranking, spec, "b2o", centres)
    assert (b2o.victim, b2o.target) == ("road", "car")
    b2b = choose_pair(ranking, spec, "b2b", centres)
    assert spec.kind(spec.class_id(b2b.victim)) == spec.kind(spec.class_id(b2b.target)) == "stuff"
    assert b2b.pair.rank > 1 and "B2B" in b2b.reason
    # a victim seen in too few surrogate images is passed over
    rare = _centres_with(spec, ("car", "road"), {}, {"car": 1})
    o2b_rare = choose_pair(rank_pairs(distance_matrix(rare.centres), spec), spec, "o2b", rare)
    assert o2b_rare.victim != "car"
    with pytest.raises(ValueError, match="no pair rule"):
        choose_pair(ranking, spec, "hba", centres)


def test_rank_agreement_matches_scipy_and_counts_top_k_overlap():
    rng = np.random.default_rng(4)
    a = distance_matrix(rng.normal(size=(12, 6)))
    b = distance_matrix(rng.normal(size=(12, 6)))
    same = rank_agreement(a, a)
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)
    assert same["top_k_overlap"] == {"20": 20, "50": 50, "100": 66} and same["top_k_of"]["100"] == 66
    got = rank_agreement(a, b, ks=(5, 20))
    iu = np.triu_indices(12, 1)
    assert got["spearman"] == pytest.approx(stats.spearmanr(a[iu], b[iu]).statistic)
    assert got["kendall"] == pytest.approx(stats.kendalltau(a[iu], b[iu]).statistic)
    top = {k: len(set(np.argsort(a[iu])[:k]) & set(np.argsort(b[iu])[:k])) for k in (5, 20)}
    assert got["top_k_overlap"] == {str(k): v for k, v in top.items()} and got["pairs"] == 66
    flipped = rank_agreement(a, 1.0 - a)
    assert flipped["spearman"] == pytest.approx(-1.0)


def test_pair_outputs(tmp_path):
    spec = get_spec("camvid")
    centres = _centres_with(spec, ("car", "road"), {}, {})
    centres.centres[spec.class_id("bicyclist")] = np.nan
    dist = distance_matrix(centres.centres)
    ranking = rank_pairs(dist, spec)
    write_pair_outputs(centres, dist, ranking, spec, tmp_path, title="test", extra={"surrogate": "x"})
    d = json.loads((tmp_path / "pairs.json").read_text())
    assert d["surrogate"] == "x" and d["ranking"][0]["pair"] == ["road", "car"] and d["ranking"][0]["rank"] == 1
    assert d["present"][spec.class_id("bicyclist")] is False
    assert np.allclose(load_distances(tmp_path / "pairs.json"), dist, equal_nan=True)
    md = (tmp_path / "pairs.md").read_text()
    assert "| 1 | (road, car) |" in md and "O2B, B2O" in md and "bicyclist" in md
    assert (tmp_path / "pair_distances.png").stat().st_size > 10_000
