"""Augmentation, the dataset adapter, fit (loss, logs, resume, DDP) and batched prediction."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from scipy import ndimage
from torch import nn

from badseg.data.types import Sample
from badseg.train import AugmentConfig, FitConfig, SegTorchDataset, augment, fit, predict, predict_batches

COLOURS = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], dtype=np.uint8)  # label = colour id


def _colour_samples(n: int, size: int = 32, seed: int = 0) -> list[Sample]:
    """Images of four coloured quadrant-ish blocks; the label is the block's colour id."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        label = np.zeros((size, size), dtype=np.int64)
        cy, cx = rng.integers(8, size - 8, size=2)
        ids = rng.integers(0, 3, size=4)
        label[:cy, :cx], label[:cy, cx:], label[cy:, :cx], label[cy:, cx:] = ids
        image = np.clip(COLOURS[label].astype(int) + rng.integers(-20, 21, size=(size, size, 3)), 0, 255)
        samples.append(Sample(image.astype(np.uint8), label, meta={"id": str(i)}))
    return samples


def _tiny_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.1), nn.Conv2d(8, 3, 1)
    )


def _log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


# --- augmentation -----------------------------------------------------------------------------


def test_augment_nearest_labels_alignment_and_determinism() -> None:
    rng = np.random.default_rng(0)
    label = np.kron(rng.choice([0, 3, 7], size=(6, 5)), np.ones((8, 8), dtype=np.int64))  # 48×40 blocks
    image = np.repeat((label * 30).astype(np.uint8)[..., None], 3, axis=2)
    cfg = AugmentConfig(scale_range=(0.5, 2.0), crop_size=(56, 56), hflip_p=0.5)
    for seed in range(10):
        img, lab = augment(image, label, cfg, np.random.default_rng(seed))
        assert img.shape == (56, 56, 3) and img.dtype == np.uint8 and lab.shape == (56, 56) and lab.dtype == np.int64
        assert set(np.unique(lab)) <= {0, 3, 7, 255}
        assert (img[lab == 255] == 0).all()
        interior = (ndimage.maximum_filter(lab, 3) == ndimage.minimum_filter(lab, 3)) & (lab != 255)
        assert (np.abs(img[..., 0].astype(int) - 30 * lab)[interior] <= 2).all()  # image and label aligned
        img2, lab2 = augment(image, label, cfg, np.random.default_rng(seed))
        assert np.array_equal(img, img2) and np.array_equal(lab, lab2)

    t_img, t_lab = augment(torch.from_numpy(image), torch.from_numpy(label), cfg, np.random.default_rng(0))
    n_img, n_lab = augment(image, label, cfg, np.random.default_rng(0))
    assert (
        isinstance(t_img, torch.Tensor)
        and np.array_equal(t_img.numpy(), n_img)
        and np.array_equal(t_lab.numpy(), n_lab)
    )


def test_seg_torch_dataset_seeded_per_epoch_and_index() -> None:
    samples = _colour_samples(3)
    ds = SegTorchDataset(samples, size=(24, 24), augment=AugmentConfig(crop_size=(16, 16)), seed=5)
    image, label = ds[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert label.shape == (16, 16) and label.dtype == torch.int64
    again = SegTorchDataset(samples, size=(24, 24), augment=AugmentConfig(crop_size=(16, 16)), seed=5)
    assert all(torch.equal(a, b) for a, b in zip(ds[1], again[1], strict=True))
    views = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        views.append(ds[1][0])
    assert any(not torch.equal(views[0], v) for v in views[1:])


# --- fit ----------------------------------------------------------------------------------------


def _cfg(**kw) -> FitConfig:
    base = dict(epochs=2, batch_size=4, lr=0.05, optimizer="adamw", weight_decay=1e-4, device="cpu", seed=3)
    return FitConfig(**(base | kw))


def test_fit_reduces_loss_and_logs_each_epoch(tmp_path) -> None:
    ds = SegTorchDataset(_colour_samples(8))
    model = _tiny_net(0)
    summary = fit(model, ds, _cfg(epochs=6), tmp_path)
    log = _log(tmp_path)
    assert [r["epoch"] for r in log] == list(range(1, 7))
    assert set(log[0]) == {"epoch", "loss", "lr", "images_per_s", "seconds"}
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert summary["final_loss"] == pytest.approx(log[-1]["loss"])
    pred = predict(model, torch.stack([ds[i][0] for i in range(8)]))
    labels = torch.stack([ds[i][1] for i in range(8)])
    assert (pred == labels).float().mean() > 0.9
    batches = list(predict_batches(model, ds, batch_size=3, device="cpu"))
    assert torch.equal(torch.cat([i for i, _ in batches]), torch.arange(8))
    assert torch.equal(torch.cat([p for _, p in batches]), pred)


class _Interrupt(Exception):
    pass


class _InterruptAfter(torch.utils.data.Dataset):
    """Serves ``n`` items of ``inner`` and then raises, like a job killed mid-epoch."""

    def __init__(self, inner: SegTorchDataset, n: int) -> None:
        self.inner, self.n, self.served = inner, n, 0

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        if self.served == self.n:
            raise _Interrupt
        self.served += 1
        return self.inner[index]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path) -> None:
    samples = _colour_samples(8)
    dataset = lambda: SegTorchDataset(samples, augment=AugmentConfig(scale_range=(0.75, 1.25), crop_size=(24, 24)))  # noqa: E731
    straight = _tiny_net(0)
    fit(straight, dataset(), _cfg(), tmp_path / "straight")

    with pytest.raises(_Interrupt):  # killed after epoch 1 plus one item of epoch 2
        fit(_tiny_net(0), _InterruptAfter(dataset(), n=len(samples) + 1), _cfg(), tmp_path / "resumed")
    assert len(_log(tmp_path / "resumed")) == 1
    resumed = _tiny_net(7)  # a different init: everything must come from last.pt
    summary = fit(resumed, dataset(), _cfg(), tmp_path / "resumed")

    assert summary["resumed_from_epoch"] == 1
    assert _log(tmp_path / "resumed")[-1]["loss"] == _log(tmp_path / "straight")[-1]["loss"]
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


# --- DDP ----------------------------------------------------------------------------------------


def _ddp_worker(rank: int, out_dir: str, port: int) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 16, 16, generator=g)
    labels = (images[:, 0] > 0.5).long()
    model = _tiny_net(seed=rank)  # different init per rank: DDP must broadcast rank 0's
    fit(model, torch.utils.data.TensorDataset(images, labels), _cfg(epochs=1, batch_size=2), f"{out_dir}/run")
    torch.save(model.state_dict(), f"{out_dir}/rank{rank}.pt")


def test_ddp_gloo_two_processes_end_identical(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(str(tmp_path), port), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len(_log(tmp_path / "run")) == 1 and (tmp_path / "run" / "last.pt").is_file()
    assert not torch.equal(a["0.weight"], _tiny_net(0).state_dict()["0.weight"])  # it trained
