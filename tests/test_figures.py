"""Report figures: PNGs of sensible size whose pixels show the right label colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badseg.data.types import DatasetSpec, Sample
from badseg.report.figures import (
    label_overlay,
    save_contact_sheet,
    save_prediction_grid,
    save_sample_panel,
    save_training_curves,
)

SPEC = DatasetSpec(
    name="toy",
    classes=("road", "sky", "car", "person"),
    kinds=("stuff", "stuff", "object", "object"),
    palette=np.array([[128, 64, 128], [70, 130, 180], [0, 0, 142], [220, 20, 60]]),
)
H, W = 60, 80


def _sample() -> Sample:
    image = np.full((H, W, 3), 200, dtype=np.uint8)
    label = np.zeros((H, W), dtype=np.int64)  # road
    label[:20] = 1  # sky
    label[30:50, 10:40] = 2  # car
    label[55:] = 255  # ignore
    instances = np.zeros((H, W), dtype=np.int32)
    instances[30:50, 10:40] = 7
    return Sample(image, label, instances, {"id": "toy0"})


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)


def _count_color(pixels: np.ndarray, color: np.ndarray, tol: int = 2) -> int:
    return int((np.abs(pixels - np.asarray(color, dtype=int)).max(axis=1) <= tol).sum())


def _assert_size(path: Path, min_wh: tuple[int, int], max_wh: tuple[int, int]) -> None:
    w, h = Image.open(path).size
    assert min_wh[0] <= w <= max_wh[0] and min_wh[1] <= h <= max_wh[1], (w, h)


def test_label_overlay_blends_classes_and_keeps_ignore_pixels() -> None:
    s = _sample()
    out = label_overlay(s.image, s.label, SPEC, alpha=0.5)
    np.testing.assert_array_equal(out[58, 5], s.image[58, 5])
    np.testing.assert_array_equal(out[40, 20], np.rint((200 + SPEC.palette[2].astype(int)) / 2).astype(np.uint8))


def test_sample_panel_shows_present_class_colours(tmp_path: Path) -> None:
    s = _sample()
    path = save_sample_panel(s, SPEC, tmp_path / "sub" / "panel.png", title="toy0")
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    _assert_size(path, (500, 200), (1400, 700))
    pixels = _pixels(path)
    overlay = label_overlay(s.image, s.label, SPEC)
    for cls, (y, x) in {0: (25, 60), 1: (5, 5), 2: (40, 20)}.items():
        assert _count_color(pixels, overlay[y, x]) > 200, SPEC.classes[cls]  # blended region
        assert _count_color(pixels, SPEC.palette[cls], tol=0) > 20, SPEC.classes[cls]  # legend patch
    absent = label_overlay(s.image[:1, :1], np.full((1, 1), 3), SPEC)[0, 0]
    assert _count_color(pixels, absent) == 0 and _count_color(pixels, SPEC.palette[3]) == 0


def test_contact_sheet_and_prediction_grid(tmp_path: Path) -> None:
    s = _sample()
    trigger = np.zeros((H, W), bool)
    trigger[36:44, 21:29] = True
    poisoned = s.image.copy()
    poisoned[trigger] = 255
    new_label = s.label.copy()
    new_label[s.label == 2] = 0
    row = dict(image=s.image, poisoned=poisoned, trigger_mask=trigger, label=s.label, new_label=new_label,
               asr_mask=s.label == 2, caption="O2B car→road")
    sheet = save_contact_sheet([row, {**row, "trigger_mask": np.zeros((H, W), bool)}], SPEC, tmp_path / "sheet.png", "t")
    _assert_size(sheet, (1000, 400), (2000, 1200))
    pixels = _pixels(sheet)
    assert _count_color(pixels, SPEC.palette[2], tol=0) > 500  # car in the old label column
    grid = save_prediction_grid(
        [dict(image=s.image, gt=s.label, pred_clean=s.label, triggered_image=poisoned, pred_triggered=new_label)],
        SPEC, tmp_path / "grid.png",
    )
    _assert_size(grid, (1000, 200), (2000, 800))
    assert _count_color(_pixels(grid), SPEC.palette[1], tol=0) > 500
    with pytest.raises(ValueError):
        save_contact_sheet([], SPEC, tmp_path / "empty.png")


def test_training_curves(tmp_path: Path) -> None:
    rows = [{"epoch": e, "iteration": 10 * e, "loss": 1 / (e + 1), "lr": 0.01 * 0.9**e, "tag": "x"} for e in range(8)]
    rows.append({"epoch": 7, "val_miou": 0.5, "val_loss": 0.3})
    path = save_training_curves(rows, tmp_path / "curves.png")
    _assert_size(path, (400, 500), (1000, 1400))
    with pytest.raises(ValueError, match="numeric"):
        save_training_curves([{"tag": "x"}], tmp_path / "none.png")
