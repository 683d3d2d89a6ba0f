"""``fit`` under torchrun: 2 gloo processes on CPU (batch 2 each) end with the weights of 1 process
(batch 4) to within 1e-5 — the same samples per step, gradients averaged across the ranks."""

from __future__ import annotations

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
