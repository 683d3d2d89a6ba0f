"""Image and label file I/O, and atomic writes (a reader never sees a half-written file; the data
is fsynced before the rename, so a crash cannot leave a renamed but empty file)."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a single-channel (or palette) label PNG as its raw integer ids, (H, W)."""
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            raise ValueError(f"{path}: label image is {im.mode}, expected single-channel ids")
        return np.asarray(im)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` (via ``os.replace``) only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    with atomic_open(path) as f:
        f.write(data)


def png_bytes(array: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode uint8 (H, W) or (H, W, 3) as PNG bytes (fast, lossless)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(path: str | Path, array: np.ndarray, compress_level: int = 1) -> None:
    """Atomically write a uint8 image or label map as PNG."""
    if array.dtype != np.uint8:
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise ValueError(f"{path}: values outside 0..255 cannot be stored as an 8-bit PNG")
        array = array.astype(np.uint8)
    atomic_write_bytes(path, png_bytes(array, compress_level))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write JSON (indented, UTF-8)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def load_failure(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` of a weights or checkpoint file failed, in words
    (never advising ``weights_only=False``)."""
    if isinstance(error, pickle.UnpicklingError):
        return ("it holds pickled objects other than tensors, which badseg refuses to load (loading them could run "
                "code); save a plain state dict with torch.save(model.state_dict(), path)")
    if isinstance(error, EOFError):
        return "the file is empty"
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"the file is damaged or cut short ({type(error).__name__}: {first})"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
