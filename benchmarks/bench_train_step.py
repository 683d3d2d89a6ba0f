"""badseg's training step against a bare PyTorch loop: same model, batch and data (already in
memory), timed side by side in one run, rounds interleaved so machine load hits both alike.

Rows: ``bare`` (the textbook loop: forward, cross-entropy, zero_grad, backward, step),
``bare channels_last`` (the same with the memory format badseg trains in), ``badseg step``
(``badseg.train.train_step`` as ``fit`` calls it, with the poly learning rate set per step and
the loss accumulated) and ``badseg fit`` (the whole ``fit`` loop over an in-memory dataset: sampler,
DataLoader, progress and logging; its second epoch timed). Goal: ``badseg step`` ≤ 1.05 × ``bare``.

Run: ``python benchmarks/bench_train_step.py [--model fpn-effl0 --size 96 192 --batch 4 --steps 8 --rounds 3]``.
Prints the table and writes ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from badseg.data.types import IGNORE_INDEX
from badseg.models import build_model
from badseg.train import TRAIN_LOG, FitConfig, fit, poly_lr, train_step


class InMemory(Dataset):
    """The batches' samples as one dataset, so ``fit`` sees the same data as the loops."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def _bare(channels_last: bool) -> Callable:
    def step(model, optimizer, x, y, it, n):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _badseg_step(model, optimizer, x, y, it, n, scaler=torch.amp.GradScaler("cuda", enabled=False)):
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(2e-3, it, n, 0.9)
    return train_step(model, optimizer, scaler, (x.contiguous(memory_format=torch.channels_last), y), use_amp=False)


def time_loop(step: Callable, name: str, classes: int, batches: list, channels_last: bool, warmup: int) -> float:
    """Seconds per step of ``step`` over ``batches`` (after ``warmup`` steps)."""
    model = build_model(name, classes, seed=0).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    total = torch.zeros(())
    for it, (x, y) in enumerate(batches[:warmup]):
        total += step(model, optimizer, x, y, it, len(batches))
    t = time.perf_counter()
    for it, (x, y) in enumerate(batches[warmup:], warmup):
        total += step(model, optimizer, x, y, it, len(batches))
    total.item()
    return (time.perf_counter() - t) / (len(batches) - warmup)


def time_fit(name: str, classes: int, batches: list, batch: int, warmup: int) -> float:
    """Seconds per step of ``fit``'s second epoch over the timed batches' samples (the first
    epoch warms up; an epoch's time in ``train_log.jsonl`` leaves out its checkpoint)."""
    timed = batches[warmup:]
    data = InMemory(torch.cat([x for x, _ in timed]), torch.cat([y for _, y in timed]))
    model = build_model(name, classes, seed=0)
    with tempfile.TemporaryDirectory() as out:
        summary = fit(model, data, FitConfig(epochs=2, batch_size=batch, lr=2e-3, optimizer="adamw",
                                             weight_decay=1e-4, device="cpu", log_every=10**9), out, resume=False)
        epochs = [json.loads(line) for line in (Path(out) / TRAIN_LOG).read_text().splitlines()]
    return epochs[1]["seconds"] / (summary["iterations"] // 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="fpn-effl0")
    ap.add_argument("--size", type=int, nargs=2, default=(96, 192))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round (after 2 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    classes, warmup = 19, 2
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(args.batch, 3, *args.size, generator=g),
                torch.randint(0, classes, (args.batch, *args.size), generator=g)) for _ in range(warmup + args.steps)]
    rows: dict[str, list[float]] = {"bare": [], "bare channels_last": [], "badseg step": [], "badseg fit": []}
    for _ in range(args.rounds):
        rows["bare"].append(time_loop(_bare(False), args.model, classes, batches, False, warmup))
        rows["bare channels_last"].append(time_loop(_bare(True), args.model, classes, batches, True, warmup))
        rows["badseg step"].append(time_loop(_badseg_step, args.model, classes, batches, True, warmup))
        rows["badseg fit"].append(time_fit(args.model, classes, batches, args.batch, warmup))
    bare = statistics.median(rows["bare"])
    print(f"{args.model}, batch {args.batch} at {args.size[0]}×{args.size[1]}, {args.steps} timed steps × "
          f"{args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| loop | s / step (median of rounds) | × bare |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {statistics.median(v):.3f} | {statistics.median(v) / bare:.3f} |")
    dest = Path(__file__).with_name("results") / "train_step.json"
    dest.write_text(json.dumps({
        "model": args.model, "size": list(args.size), "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "seconds_per_step": rows, "ratio_to_bare": {k: statistics.median(v) / bare for k, v in rows.items()},
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }, indent=1))
    print(f"→ {dest}")


if __name__ == "__main__":
    main()
