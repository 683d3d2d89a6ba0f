"""``badseg stealth``: the stealth of a config's poisoned test set, as ``badseg run`` builds it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from badseg.build import attack_for, datasets_for
from badseg.cli import app
from badseg.config import DEMO_CONFIG, load_config
from badseg.poisoning.dataset import PoisonedTestSet

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["data.test_length=6", "data.train_length=6", "workers=1", "trigger.size=0.3"]
DEMO = str(DEMO_CONFIG)
runner = CliRunner()


def _stealth(tmp_path, overrides: list[str], *extra: str) -> list[dict]:
    out = tmp_path / "stealth.json"
    args = ["stealth", DEMO, *(a for o in overrides for a in ("--set", o)), *extra,
            "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_stealth_is_the_mean_over_the_poisoned_test_set_as_skimage_computes_it(tmp_path) -> None:
    (row,) = _stealth(tmp_path, SMALL)
    cfg = load_config(DEMO, SMALL)
    train, test = datasets_for(cfg)
    poisoned = PoisonedTestSet(test, attack_for(cfg, train), cfg.seed)
    pairs = [poisoned[k] for k in range(len(poisoned))]
    assert row["n_images"] == len(pairs) > 0 and row["n_skipped"] == len(test) - len(pairs)
    psnr = [peak_signal_noise_ratio(c.image, p.image, data_range=255) for c, p in pairs]
    ssim = [structural_similarity(c.image, p.image, channel_axis=2, data_range=255, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False) for c, p in pairs]
    assert row["psnr"] == pytest.approx(np.mean(psnr), rel=1e-9)
    assert row["ssim"] == pytest.approx(np.mean(ssim), abs=1e-4)
    assert row["attack"]["attack"] == "o2b" and row["attack"]["trigger"]["size"] == 0.3
    assert row["lpips"] is None and "AlexNet" in row["lpips_reason"]


def test_a_fainter_trigger_is_stealthier_and_each_config_is_one_row(tmp_path) -> None:
    out = tmp_path / "two.json"
    r = runner.invoke(app, ["stealth", DEMO, DEMO,
                            *(a for o in SMALL for a in ("--set", o)), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())) == 2
    (faint,) = _stealth(tmp_path, [*SMALL, "trigger.intensity=0.1"])
    (opaque,) = _stealth(tmp_path, [*SMALL, "trigger.intensity=1.0"])
    assert faint["n_images"] == opaque["n_images"]  # the same images, only the blend differs
    assert faint["psnr"] > opaque["psnr"] + 10 and faint["ssim"] > opaque["ssim"]


def test_lpips_weights_that_are_not_there_give_null_with_the_reason(tmp_path) -> None:
    missing = tmp_path / "alexnet.pth"
    (row,) = _stealth(tmp_path, SMALL, "--lpips-weights", str(missing))
    assert row["lpips"] is None and str(missing) in row["lpips_reason"]


def test_stealth_of_a_bad_config_is_one_error(tmp_path) -> None:
    r = runner.invoke(app, ["stealth", DEMO, "--set", "attack.victim=nope"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "nope" in r.output
