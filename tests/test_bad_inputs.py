"""Bad inputs, tried as a careful new user would (issue 14): a fuzz-style table over the CLI.

Every case must end with exit status 2 and one message naming the offending file, key or value
(no traceback), before any heavy work, and change nothing outside ``--out``: the source dataset,
the working directory and the (fake) home folder are checksummed before and after. The CLI runs
in-process (typer's CliRunner); only the kill tests start real processes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from badseg.cli import app
from badseg.data.camvid import CAMVID_SPEC

runner = CliRunner()
CAR, ROAD, SKY, BUILDING = (CAMVID_SPEC.class_id(c) for c in ("car", "road", "sky", "building"))
H, W = 64, 96


def _scene(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CamVid-like frame: sky, building, road and one car; never a bicyclist."""
    rng = np.random.default_rng(i)
    label = np.full((H, W), ROAD, np.uint8)
    label[: H // 3] = SKY
    label[H // 3: H // 2] = BUILDING
    x0 = 8 + 6 * i
    label[H // 2: H // 2 + 20, x0: x0 + 40] = CAR  # wide enough for a 5-px stamp (1/8 of its width)
    image = (CAMVID_SPEC.palette[label] * 0.8 + rng.integers(0, 40, (H, W, 3))).astype(np.uint8)
    return image, label


def _write_camvid(root: Path, n: int = 4) -> None:
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            image, label = _scene(i + (10 if split == "val" else 0))
            Image.fromarray(image).save(root / split / f"f{i}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")


def _digest(root: Path, skip: Path | None) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the names of empty folders), ``skip`` and below left out."""
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir() and not any(p.iterdir()):
            out[str(p.relative_to(root))] = "empty folder"
    return out


@dataclass
class World:
    """A fake home holding the working directory, a CamVid-layout source and a valid run config."""

    root: Path
    home: Path
    work: Path
    src: Path
    cfg: Path
    paths: dict[str, str] = field(default_factory=dict)

    def fmt(self, text: str) -> str:
        return text.format(**self.paths)


RUN_CONFIG = """\
data: {{name: camvid, root: {src}, size: [32, 32]}}
attack: {{vector: o2b, victim: car, target: road, rate: 0.5}}
trigger: {{shape: square, size: 0.25, intensity: 0.8}}
model: {{name: deeplabv3plus-mbv2, pretrained: none}}
train: {{epochs: 1, batch_size: 2}}
"""


@pytest.fixture
def world(tmp_path, tmp_path_factory, monkeypatch) -> World:
    home = tmp_path / "home"
    work = home / "projects" / "work"
    work.mkdir(parents=True)
    (work / "thesis.txt").write_text("years of work")
    (home / "notes").mkdir()
    (home / "notes" / "sentinel.txt").write_text("keep me")
    (work / "old_run").mkdir()
    (work / "old_run" / "model.txt").write_text("not an export")
    (work / "a_file").write_text("a file, not a folder")
    src = tmp_path / "data" / "camvid"
    _write_camvid(src)
    cfg = work / "run.yaml"
    cfg.write_text(RUN_CONFIG.format(src=src))
    monkeypatch.setenv("HOME", str(home))
    caches = tmp_path_factory.mktemp("caches")  # matplotlib's and torch's caches are not the user's files
    monkeypatch.setenv("MPLCONFIGDIR", str(caches / "matplotlib"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(caches))
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.chdir(work)
    w = World(tmp_path, home, work, src, cfg)
    w.paths = {"src": str(src), "cfg": str(cfg), "home": str(home), "work": str(work), "tmp": str(tmp_path)}
    return w


# --- damage done to the world before a case (the source files, the run folder) -------------------------


def _corrupt_image(w: World) -> None:
    (w.src / "val" / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))


def _truncate_image(w: World) -> None:
    path = w.src / "val" / "f1.png"
    path.write_bytes(path.read_bytes()[:-40])


def _resize_label(w: World) -> None:
    label = np.asarray(Image.open(w.src / "valannot" / "f3.png"))
    Image.fromarray(label[:, : W - 8].copy()).save(w.src / "valannot" / "f3.png")


def _bad_label_id(w: World) -> None:
    label = np.asarray(Image.open(w.src / "valannot" / "f0.png")).copy()
    label[0, 0] = 42
    Image.fromarray(label).save(w.src / "valannot" / "f0.png")


def _remove_label(w: World) -> None:
    (w.src / "valannot" / "f1.png").unlink()


def _damage_train_image(w: World) -> None:
    (w.src / "train" / "f3.png").write_bytes(b"not an image at all")


def _resize_train_label(w: World) -> None:
    label = np.asarray(Image.open(w.src / "trainannot" / "f1.png"))
    Image.fromarray(label[: H - 4].copy()).save(w.src / "trainannot" / "f1.png")


def _file(name: str, data: bytes) -> Callable[[World], None]:
    def make(w: World) -> None:
        (w.work / name).write_bytes(data)
    return make


def _malicious_weights(w: World) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {w.work / 'pwned'}",)

    torch.save({"model": Payload()}, w.work / "evil.pt")


def _foreign_weights(w: World) -> None:
    from badseg.models import build_model

    torch.save(build_model("deeplabv3plus-mbv2", 3).state_dict(), w.work / "three_classes.pt")


def _checkpoint(data: bytes | None) -> Callable[[World], None]:
    """A run folder ``runs/r`` (with its config) whose backdoored/last.pt is ``data`` (None: cut short)."""
    def make(w: World) -> None:
        from badseg.config import dump_config, load_config

        run = w.work / "runs" / "r"
        (run / "backdoored").mkdir(parents=True)
        (run / "config.yaml").write_text(dump_config(load_config(w.cfg)))
        if data is None:
            torch.save({"model": {"w": torch.zeros(10_000)}, "epoch": 1}, run / "backdoored" / "last.pt")
            full = (run / "backdoored" / "last.pt").read_bytes()
            (run / "backdoored" / "last.pt").write_bytes(full[: len(full) // 2])
        else:
            (run / "backdoored" / "last.pt").write_bytes(data)
    return make


def _bad_yaml(text: str) -> Callable[[World], None]:
    def make(w: World) -> None:
        (w.work / "bad.yaml").write_text(text)
    return make


# --- the table ---------------------------------------------------------------------------------------

POISON = ["poison", "-d", "camvid", "--root", "{src}", "--split", "val", "-a", "o2b", "--victim", "car",
          "--target", "road", "--rate", "0.5", "--workers", "1", "--sheet", "0"]
RUN = ["run", "{cfg}"]


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    says: tuple[str, ...]  # every fragment appears in the message (the offending file, key or value)
    out: str | None = None  # --out, relative to the working directory: it alone may change
    setup: Callable[[World], None] | None = None


def poison(*extra: str, out: str = "fresh") -> list[str]:
    return [*POISON, *extra, "--out", out]


def run(*sets: str, out: str = "runs/r", config: str = "{cfg}") -> list[str]:
    return ["run", config, "--out", out, *[a for s in sets for a in ("--set", s)]]


CASES = [
    # --out: where nothing may ever be written or replaced
    Case("poison-out-dot", poison(out="."), ("refusing to write to .", "working directory")),
    Case("poison-out-dot-overwrite", poison("--overwrite", out="."), ("working directory",)),
    Case("poison-out-parent", poison("--overwrite", out=".."), ("..", "above the working directory")),
    Case("poison-out-home", poison("--overwrite", out="{home}"), ("{home}", "home folder")),
    Case("poison-out-tilde", poison("--overwrite", out="~"), ("~", "home folder")),
    Case("poison-out-root", poison("--overwrite", out="/"), ("filesystem root",)),
    Case("poison-overwrite-non-export", poison("--overwrite", out="old_run"), ("old_run", "no badseg export")),
    Case("poison-overwrite-sentinel-elsewhere", poison("--overwrite", out="{home}/notes"),
         ("notes", "no badseg export")),
    Case("poison-out-not-empty", poison(out="old_run"), ("old_run", "not empty")),
    Case("poison-out-is-a-file", poison(out="a_file"), ("a_file", "not a folder")),
    Case("poison-out-inside-source", poison(out="{src}/poisoned"), ("overlaps the source", "{src}")),
    Case("poison-out-holds-source", poison("--overwrite", out="{tmp}/data"), ("overlaps the source",)),
    # option values
    Case("poison-rate-above-1", poison("--rate", "1.5"), ("--rate", "1.5")),
    Case("poison-rate-negative", poison("--rate", "-0.1"), ("--rate", "-0.1")),
    Case("poison-limit-0", poison("--limit", "0"), ("--limit", "0")),
    Case("poison-workers-0", poison("--workers", "0"), ("--workers", "0")),
    Case("poison-workers-negative", poison("--workers", "-1"), ("--workers", "-1")),
    Case("poison-unknown-attack", poison("-a", "o2x"), ("o2x", "o2b")),
    Case("poison-unknown-victim", poison("--victim", "cart"), ("cart", "car")),
    Case("poison-stuff-victim-for-o2b", poison("--victim", "sky"), ("sky",)),
    Case("poison-size-0", poison("--size", "0"), ("size", "0")),
    Case("poison-intensity-2", poison("--intensity", "2"), ("intensity", "2")),
    Case("poison-unknown-shape", poison("--shape", "star"), ("star", "circle")),
    Case("poison-unknown-pattern", poison("--pattern", "plaid"), ("plaid",)),
    Case("poison-unknown-placement", poison("--placement", "nowhere"), ("nowhere",)),
    Case("poison-band-one-number", poison("-a", "iba", "--band", "3"), ("--band", "'3'")),
    Case("poison-matrix-malformed", poison("-a", "hba", "--hba-mode", "matrix", "--matrix", "car"),
         ("--matrix", "'car'")),
    Case("poison-unknown-dataset", ["poison", *POISON[1:2], "camvidd", *POISON[3:], "--out", "fresh"],
         ("camvidd", "camvid")),
    Case("poison-missing-root", poison("--root", "{tmp}/nowhere"), ("{tmp}/nowhere",)),
    Case("poison-unknown-split", poison("--split", "tset"), ("tset",)),
    Case("poison-victim-in-no-image", poison("--victim", "bicyclist"), ("applies to none", "bicyclist")),
    Case("poison-rate-rounds-to-none", poison("--rate", "0.1"), ("rate 0.1", "rounds to 0")),
    # the source on disk
    Case("poison-corrupt-image", poison(), ("{src}/val/f2.png",), setup=_corrupt_image),
    Case("poison-truncated-image", poison(), ("{src}/val/f1.png",), setup=_truncate_image),
    Case("poison-image-label-size-mismatch", poison(), ("{src}/val/f3.png", "96x64", "88x64"), setup=_resize_label),
    Case("poison-label-id-out-of-range", poison(), ("{src}/valannot/f0.png", "[42]"), setup=_bad_label_id),
    Case("poison-missing-label", poison(), ("{src}/valannot/f1.png",), setup=_remove_label),
    # show
    Case("show-out-is-a-folder", ["show", "-d", "camvid", "--root", "{src}", "--out", "old_run"], ("old_run", "folder")),
    Case("show-index-out-of-range", ["show", "-d", "camvid", "--root", "{src}", "--index", "99", "--out", "s.png"],
         ("99",), out="s.png"),
    Case("show-unknown-split", ["show", "-d", "camvid", "--root", "{src}", "--split", "x", "--out", "s.png"],
         ("{src}/x",), out="s.png"),
    # run: the config file and --set
    Case("run-missing-config", run(config="nope.yaml"), ("nope.yaml",)),
    Case("run-invalid-yaml", run(config="bad.yaml"), ("bad.yaml", "invalid YAML", "line 3"),
         setup=_bad_yaml("data:\n  size: [32, 32\nattack: {}\n")),
    Case("run-yaml-not-a-mapping", run(config="bad.yaml"), ("bad.yaml", "mapping"), setup=_bad_yaml("- data\n")),
    Case("run-yaml-unknown-key", run(config="bad.yaml"), ("bad.yaml", "trigger.sise"),
         setup=_bad_yaml("trigger: {sise: 0.2}\n")),
    Case("run-set-invalid-yaml", run("trigger.size=[0.1"), ("trigger.size=[0.1", "invalid YAML")),
    Case("run-set-no-value", run("novalue"), ("novalue", "key=value")),
    Case("run-set-unknown-key", run("trian.epochs=2"), ("trian",)),
    Case("run-set-size-zero", run("data.size=[0,0]"), ("data.size", "32", "got 0")),
    Case("run-set-epochs-zero", run("train.epochs=0"), ("train.epochs", "got 0")),
    Case("run-set-epochs-negative", run("train.epochs=-3"), ("train.epochs", "got -3")),
    Case("run-set-epochs-text", run("train.epochs=abc"), ("train.epochs", "'abc'")),
    Case("run-set-rate-2", run("attack.rate=2"), ("attack.rate", "got 2")),
    Case("run-set-limit-0", run("data.limit_train=0"), ("data.limit_train", "got 0")),
    Case("run-set-workers-0", run("workers=0"), ("workers", "got 0")),
    Case("run-set-scale-range-reversed", run("train.scale_range=[2,1]"), ("scale_range",)),
    Case("run-unknown-shape", run("trigger.shape=star"), ("star",)),
    Case("run-unknown-attack", run("attack.vector=o2bb"), ("attack", "o2bb")),
    Case("run-attack-option-bad-value", run("attack.options.carriers=every"), ("carriers", "every")),
    Case("run-attack-option-not-taken", run("attack.options.k=2"), ("'k'",)),
    Case("poison-config-invalid-yaml", ["poison", "bad.yaml", "--out", "fresh"], ("bad.yaml", "invalid YAML"),
         setup=_bad_yaml("attack: {vector: o2b\n")),
    Case("poison-carriers-bad-value", poison("--carriers", "every"), ("carriers", "every")),
    Case("run-unknown-model", run("model.name=resnet9000"), ("resnet9000",)),
    Case("run-unknown-dataset", run("data.name=camvidd"), ("camvidd",)),
    Case("run-unknown-victim", run("attack.victim=cart"), ("cart",)),
    Case("run-missing-root", run("data.root={tmp}/nowhere"), ("{tmp}/nowhere",)),
    # run: weights and checkpoints
    Case("run-pretrained-missing", run("model.pretrained=missing.pt"), ("missing.pt",)),
    Case("run-pretrained-empty", run("model.pretrained=empty.pt"), ("empty.pt",), setup=_file("empty.pt", b"")),
    Case("run-pretrained-garbage", run("model.pretrained=junk.pt"), ("junk.pt",),
         setup=_file("junk.pt", b"\x80\x04not really a pickle")),
    Case("run-pretrained-malicious", run("model.pretrained=evil.pt"), ("evil.pt", "could run code"),
         setup=_malicious_weights),
    Case("run-pretrained-other-model", run("model.pretrained=three_classes.pt"),
         ("three_classes.pt", "do not fit"), setup=_foreign_weights),
    Case("run-checkpoint-empty", run(), ("runs/r/backdoored/last.pt", "delete it"), setup=_checkpoint(b"")),
    Case("run-checkpoint-cut-short", run(), ("runs/r/backdoored/last.pt", "delete it"), setup=_checkpoint(None)),
    # run: the data, found by the scan before training
    Case("run-victim-in-no-image", run("attack.victim=bicyclist"), ("applies to none", "training split",
                                                                   "allow_unpoisoned")),
    Case("run-corrupt-train-image", run(), ("{src}/train/f3.png",), setup=_damage_train_image),
    Case("run-train-size-mismatch", run(), ("{src}/train/f1.png", "96x64", "96x60"), setup=_resize_train_label),
    # run: --out
    Case("run-out-dot", run(out="."), ("working directory",)),
    Case("run-out-home", run(out="{home}"), ("home folder",)),
    Case("run-out-in-dataset-root", run(out="{src}/run"), ("overlaps the dataset root",)),
    Case("run-out-is-a-file", run(out="a_file"), ("a_file", "not a folder")),
    Case("demo-set-epochs-text", ["demo", "--out", "runs/d", "--set", "train.epochs=abc"], ("train.epochs", "'abc'")),
    Case("demo-out-dot", ["demo", "--out", "."], ("working directory",)),
    Case("optimize-trigger-invalid-yaml", ["optimize-trigger", "bad.yaml", "--out", "runs/t"], ("bad.yaml", "invalid YAML", "line 2"),
         setup=_bad_yaml("search: [1, 2\n")),
    Case("rank-pairs-set-invalid", ["rank-pairs", "{cfg}", "--out", "runs/p", "--set", "surrogate.fraction=2"],
         ("surrogate.fraction", "got 2")),
]


def _out_arg(w: World, case: Case) -> Path | None:
    args = [w.fmt(a) for a in case.args]
    given = case.out or next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "-o")), None)
    if given is None:
        return None
    p = Path(given).expanduser()
    p = p if p.is_absolute() else w.work / p
    # A protected --out (., .., ~, /) or one overlapping the source is no licence to change it: then nothing may.
    r, src = p.resolve(), w.src.resolve()
    if r in (w.work, *w.work.parents) or r == w.home or r == src or r in src.parents or src in r.parents:
        return None
    return p


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_clear_message_and_changes_nothing(world: World, case: Case) -> None:
    if case.setup:
        case.setup(world)
    out = _out_arg(world, case)
    before = _digest(world.root, out)
    result = runner.invoke(app, [world.fmt(a) for a in case.args])
    text = result.output
    if os.environ.get("BADSEG_SHOW_MESSAGES"):  # docs/results.md's table of how each case ends
        print(f"\n@@ {case.id} | {' '.join(text.replace('│', ' ').split())}")
    assert result.exit_code == 2, text
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert sum(line.lower().lstrip("│╭─ ").startswith("error") for line in text.splitlines()) == 1, text
    flat = " ".join(text.replace("│", " ").split())  # click's usage box may wrap a long message
    for fragment in case.says:
        assert world.fmt(fragment) in flat, (world.fmt(fragment), text)
    assert _digest(world.root, out) == before
    assert not (world.work / "pwned").exists()  # a malicious pretrained file never ran its code
    assert not list(world.root.rglob("*.partial-*")) and not list(world.root.rglob("backdoored/train_log.jsonl"))


def test_every_option_has_help_and_help_keeps_its_placeholders() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"badseg {name} {param.opts[0]} has no help"
    shown = runner.invoke(app, ["poison", "--help"], env={"COLUMNS": "200"}).output
    assert "solid[:colour]" in shown
    shown = runner.invoke(app, ["rank-pairs", "--help"], env={"COLUMNS": "200"}).output
    assert "OUT/MODEL/pairs.json" in shown


def test_a_run_stopped_by_validation_leaves_its_folder_usable_for_the_corrected_config(world: World) -> None:
    bad = runner.invoke(app, [world.fmt(a) for a in run("attack.victim=bicyclist")])
    assert bad.exit_code == 2 and "bicyclist" in bad.output
    from badseg.build import check_run_dir
    from badseg.config import load_config

    assert (world.work / "runs" / "r" / "config.yaml").is_file()  # written: the config itself was valid
    check_run_dir(load_config(world.cfg), world.work / "runs" / "r")  # the corrected config may use the folder


# --- killed processes ---------------------------------------------------------------------------------


def _badseg(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    code = "import sys; from badseg.cli import app; sys.argv[0] = 'badseg'; app()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 600.0) -> None:
    start = time.monotonic()
    while not predicate():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_export_then_a_rerun_succeeds_and_leaves_no_partial_folder(world: World) -> None:
    args = ["poison", "-d", "synthetic", "-a", "o2b", "--victim", "car", "--target", "road", "--rate", "0.5",
            "--limit", "400", "--workers", "1", "--sheet", "0", "--out", "exp"]
    partial = lambda: [p for p in world.work.glob(".exp.partial-*") if len(list((p / "images").glob("*.png"))) > 3]
    with _badseg(*args, cwd=world.work) as proc:
        _wait_for(lambda: bool(partial()), proc)
        stage = partial()[0]
        proc.send_signal(signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert stage.is_dir() and not (world.work / "exp").exists()  # killed: no half-written export at --out
    if os.environ.get("BADSEG_SHOW_MESSAGES"):
        print(f"\n@@ killed with {len(list((stage / 'images').iterdir()))} images staged in {stage.name}")

    args[args.index("400")] = "12"
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert not list(world.work.glob(".exp.*")), list(world.work.iterdir())  # the stale staging folder is gone
    from badseg.poisoning.export import is_export

    assert is_export(world.work / "exp") and len(list((world.work / "exp" / "images").iterdir())) == 12


RESUME_CONFIG = """\
data: {name: synthetic, size: [32, 64], train_length: 16, test_length: 4}
attack: {vector: o2b, victim: car, target: road, rate: 0.5}
trigger: {shape: square, size: 0.3, intensity: 0.8}
model: {name: deeplabv3plus-mbv2, pretrained: none}
train: {epochs: 4, batch_size: 4}
eval_batch_size: 4
figure_samples: 1
"""


@pytest.mark.slow
def test_sigkill_mid_training_then_a_rerun_resumes_and_ends_as_an_uninterrupted_run(world: World) -> None:
    import json

    cfg = world.work / "resume.yaml"
    cfg.write_text(RESUME_CONFIG)
    ckpt = world.work / "killed" / "backdoored" / "last.pt"
    with _badseg("run", str(cfg), "--out", "killed", cwd=world.work) as proc:
        _wait_for(ckpt.is_file, proc)
        proc.send_signal(signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL and not (world.work / "killed" / "metrics.json").exists()
    epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= epoch < 4, epoch

    resumed = runner.invoke(app, ["run", str(cfg), "--out", "killed"])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming the backdoored model from epoch {epoch} of 4" in " ".join(resumed.output.split())
    if os.environ.get("BADSEG_SHOW_MESSAGES"):
        print(f"\n@@ killed after epoch {epoch} of 4; the re-run said: resuming the backdoored model from epoch {epoch}")
    straight = runner.invoke(app, ["run", str(cfg), "--out", "straight"])
    assert straight.exit_code == 0, straight.output
    a, b = (json.loads((world.work / name / "metrics.json").read_text()) for name in ("killed", "straight"))
    for key in ("asr", "pba", "cba", "psnr", "n_poisoned_train"):
        assert a[key] == b[key], key
    wa = torch.load(world.work / "killed" / "backdoored" / "last.pt", weights_only=True)["model"]
    wb = torch.load(world.work / "straight" / "backdoored" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
