"""``fit`` under torchrun: 2 gloo processes on CPU (batch 2 each) end with the weights of 1 process
(batch 4) to within 1e-5 — the same samples per step, gradients averaged across the ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    from badseg.train.fit import FitConfig, fit

    class Pairs(torch.utils.data.Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.rand(8, 3, 16, 16, generator=g)
            self.y = torch.randint(0, 3, (8, 16, 16), generator=g)
        def __len__(self):
            return 8
        def __getitem__(self, i):
            return self.x[i], self.y[i]

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))  # no BatchNorm
    out, batch = sys.argv[1], int(sys.argv[2])
    fit(model, Pairs(), FitConfig(epochs=2, batch_size=batch, lr=0.1, optimizer="sgd", device="cpu"), out)
''')


@pytest.mark.slow  # three Python processes importing torch: ~35 s of CPU
def test_two_process_gloo_training_matches_one_process(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(script), str(tmp_path / "two"), "2"], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", **os.environ})
    assert two.returncode == 0, two.stderr
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    start = nn_init()
    for name, w in a["model"].items():
        assert torch.allclose(w, b["model"][name], atol=1e-5), name
        assert not torch.allclose(w, start[name], atol=1e-3), name  # training moved every weight


def nn_init() -> dict[str, torch.Tensor]:
    """The weights both runs start from."""
    from torch import nn

    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).state_dict()


@pytest.mark.slow
def test_torchrun_badseg_run_trains_on_both_ranks_and_rank_0_writes_the_results(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: synthetic, size: [32, 64], train_length: 8, test_length: 4}\n"
                   "model: {name: deeplabv3plus-mbv2, pretrained: none}\ntrain: {epochs: 1, batch_size: 2}\n"
                   "attack: {rate: 0.5}\nclean_reference: true\neval_batch_size: 4\nworkers: 1\nfigure_samples: 1\n")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "badseg", "run", str(cfg), "--out", str(out)], capture_output=True, text=True,
                          timeout=900, env={"OMP_NUM_THREADS": "1", **os.environ})
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clean_model_cba"] is not None and metrics["asr"] is not None
    clean_logs = list(out.glob("clean/train_log.jsonl"))
    assert len(clean_logs) == 1
    for log in (out / "backdoored" / "train_log.jsonl", *clean_logs):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(rows) == 1  # one epoch, logged once (by rank 0)
