"""Model registry and ``build_model``.

Paper models (BADSEG, Tables 2–4; mmsegmentation recipes):

=====================  ==========================================  =====================  ======
name                   network                                     ``features()``         stride
=====================  ==========================================  =====================  ======
pspnet-r50             PSPNet, ResNet-50 dilated to output stride  PSP decoder output     8
                       8 (mmseg ``pspnet_r50-d8``)                 (512 ch, after dropout)
deeplabv3-r50          DeepLabV3, ResNet-50 output stride 8        ASPP + 3×3 conv (256)  8
upernet-convnext-t     UPerNet (512 ch), timm ConvNeXt-T           UPerNet fusion (512)   4
upernet-swin-t         UPerNet (512 ch), timm Swin-T, dynamic size UPerNet fusion (512)   4
upernet-vit-b          UPerNet (512 ch), ViT-B/16 + pyramid neck   UPerNet fusion (512)   4
upernet-deit-s         UPerNet (512 ch), DeiT-S/16 + pyramid neck  UPerNet fusion (512)   4
=====================  ==========================================  =====================  ======

CPU-friendly models (demo, CamVid runs here):

=====================  ==========================================  =====================  ======
deeplabv3plus-mbv2     DeepLabV3+, MobileNetV2, output stride 16   DeepLabV3+ decoder     4
                                                                   (256 ch)
deeplabv3plus-effl0    DeepLabV3+, timm tf_efficientnet_lite0      DeepLabV3+ decoder     4
                       (offline ImageNet weights, see effl0_weights)  (256 ch)
fpn-effl0              FPN (128-ch pyramid, 64-ch segmentation     FPN merged map (64)    4
                       branch), timm tf_efficientnet_lite0 at its
                       natural stride 32 (offline ImageNet weights)
upernet-effl0          UPerNet (64 ch) on the same encoder: the    UPerNet fusion (64)    4
                       paper's head family at CPU scale
segformer-b0           SegFormer, MiT-B0                           all-MLP fusion (256)   4
=====================  ==========================================  =====================  ======

``fpn-effl0`` is the fastest to train on a CPU: DeepLabV3+ dilates the encoder's last stage to
output stride 16, FPN keeps stride 32; at 96×192 it trains at ~14 images/s on 2 cores against
~8 for ``deeplabv3plus-effl0`` (docs/results.md).

``features()`` is always the decoder output just before the classifier, i.e. the penultimate
layer; ``SegModel.feature_layer`` is that decoder module. All inputs are padded to a multiple
of 32 (Swin: timm additionally pads each stage to its 7×7 windows and builds the shift masks
per input size, ``dynamic_img_size=True``; ViT/DeiT: position embeddings are interpolated to
the padded 1/16 grid), so any H×W works.

Weights: nothing is ever downloaded. ``pretrained`` is ``"none"``, a local checkpoint path, or
``"imagenet"`` (offline weights exist only for the EfficientNet-Lite0 models).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn

from badseg.data.io import load_failure
from badseg.models.effl0_weights import LoadReport, load_effl0_imagenet
from badseg.models.segmodel import SegModel
from badseg.models.vit_neck import ViTPyramidEncoder
from badseg.registry import Registry

log = logging.getLogger(__name__)

MODELS: Registry[Callable[..., SegModel]] = Registry("model")

UPERNET_CHANNELS = 512  # mmseg UPerHead(channels=512)
TF_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # TF-trained EfficientNet-Lite: x ∈ [-1, 1]

# Backbone each model would take ImageNet weights for (named in the "imagenet" error message).
BACKBONES = {
    "pspnet-r50": "torchvision resnet50",
    "deeplabv3-r50": "torchvision resnet50",
    "upernet-convnext-t": "timm convnext_tiny",
    "upernet-swin-t": "timm swin_tiny_patch4_window7_224",
    "upernet-vit-b": "timm vit_base_patch16_224",
    "upernet-deit-s": "timm deit_small_patch16_224",
    "deeplabv3plus-mbv2": "torchvision mobilenet_v2",
    "deeplabv3plus-effl0": "timm tf_efficientnet_lite0",
    "fpn-effl0": "timm tf_efficientnet_lite0",
    "upernet-effl0": "timm tf_efficientnet_lite0",
    "segformer-b0": "smp mit_b0",
}


def _from_smp(net: nn.Module, name: str, feature_stride: int, **kw) -> SegModel:
    """Wrap an smp model: its encoder, decoder, and the conv of its segmentation head."""
    return SegModel(net.encoder, net.decoder, net.segmentation_head[0], feature_stride=feature_stride, name=name, **kw)


@MODELS.register("pspnet-r50")
def pspnet_r50(num_classes: int) -> SegModel:
    net = smp.PSPNet("resnet50", encoder_weights=None, encoder_depth=5, classes=num_classes, upsampling=8)
    net.encoder.make_dilated(output_stride=8)
    return _from_smp(net, "pspnet-r50", feature_stride=8)


@MODELS.register("deeplabv3-r50")
def deeplabv3_r50(num_classes: int) -> SegModel:
    net = smp.DeepLabV3("resnet50", encoder_weights=None, encoder_output_stride=8, classes=num_classes)
    return _from_smp(net, "deeplabv3-r50", feature_stride=8)


def _smp_upernet(encoder: str, name: str, **timm_kw) -> Callable[[int], SegModel]:
    def build(num_classes: int) -> SegModel:
        net = smp.UPerNet(
            encoder, encoder_weights=None, decoder_channels=UPERNET_CHANNELS, classes=num_classes, **timm_kw
        )
        return _from_smp(net, name, feature_stride=4)

    return build


MODELS.register("upernet-convnext-t")(_smp_upernet("tu-convnext_tiny", "upernet-convnext-t"))
MODELS.register("upernet-swin-t")(
    _smp_upernet("tu-swin_tiny_patch4_window7_224", "upernet-swin-t", dynamic_img_size=True)
)


def _vit_upernet(timm_name: str, name: str) -> Callable[[int], SegModel]:
    def build(num_classes: int) -> SegModel:
        encoder = ViTPyramidEncoder(timm_name)
        decoder = UPerNetDecoder(encoder.out_channels, encoder_depth=5, decoder_channels=UPERNET_CHANNELS)
        classifier = nn.Conv2d(UPERNET_CHANNELS, num_classes, kernel_size=1)
        return SegModel(encoder, decoder, classifier, feature_stride=4, name=name)

    return build


MODELS.register("upernet-vit-b")(_vit_upernet("vit_base_patch16_224", "upernet-vit-b"))
MODELS.register("upernet-deit-s")(_vit_upernet("deit_small_patch16_224", "upernet-deit-s"))


@MODELS.register("deeplabv3plus-mbv2")
def deeplabv3plus_mbv2(num_classes: int) -> SegModel:
    net = smp.DeepLabV3Plus("mobilenet_v2", encoder_weights=None, classes=num_classes)
    return _from_smp(net, "deeplabv3plus-mbv2", feature_stride=4)


@MODELS.register("deeplabv3plus-effl0")
def deeplabv3plus_effl0(num_classes: int) -> SegModel:
    net = smp.DeepLabV3Plus("tu-tf_efficientnet_lite0", encoder_weights=None, classes=num_classes)
    mean, std = TF_MEAN_STD
    return _from_smp(net, "deeplabv3plus-effl0", feature_stride=4, mean=mean, std=std)


@MODELS.register("fpn-effl0")
def fpn_effl0(num_classes: int) -> SegModel:
    net = smp.FPN("tu-tf_efficientnet_lite0", encoder_weights=None, classes=num_classes,
                  decoder_pyramid_channels=128, decoder_segmentation_channels=64)
    mean, std = TF_MEAN_STD
    return _from_smp(net, "fpn-effl0", feature_stride=4, mean=mean, std=std)


@MODELS.register("upernet-effl0")
def upernet_effl0(num_classes: int) -> SegModel:
    net = smp.UPerNet("tu-tf_efficientnet_lite0", encoder_weights=None, classes=num_classes, decoder_channels=64)
    mean, std = TF_MEAN_STD
    return _from_smp(net, "upernet-effl0", feature_stride=4, mean=mean, std=std)


@MODELS.register("segformer-b0")
def segformer_b0(num_classes: int) -> SegModel:
    net = smp.Segformer("mit_b0", encoder_weights=None, classes=num_classes)
    return _from_smp(net, "segformer-b0", feature_stride=4)


# Models with offline ImageNet weights: name → loader(model) -> LoadReport.
IMAGENET_LOADERS: dict[str, Callable[[SegModel], LoadReport]] = {
    "deeplabv3plus-effl0": lambda m: load_effl0_imagenet(m.encoder.model),
    "fpn-effl0": lambda m: load_effl0_imagenet(m.encoder.model),
    "upernet-effl0": lambda m: load_effl0_imagenet(m.encoder.model),
}


class PretrainedUnavailableError(ValueError):
    """``pretrained="imagenet"`` for a model without offline weights."""


def build_model(name: str, num_classes: int, pretrained: str | Path = "none") -> SegModel:
    """Build a registered model; ``pretrained`` is ``"none"``, ``"imagenet"`` or a local path.

    ``"imagenet"`` works offline for ``deeplabv3plus-effl0`` only and fails at once (before
    building anything, no network) for every other model. A path is loaded with
    ``load_weights``. The load result is kept on ``model.load_report`` (None when random).
    """
    factory = MODELS.get(name)
    if pretrained == "imagenet" and name not in IMAGENET_LOADERS:
        raise PretrainedUnavailableError(
            f"no offline ImageNet weights for model {name!r} (badseg never downloads; offline weights exist "
            f"for: {', '.join(sorted(IMAGENET_LOADERS))}). Pass pretrained='/path/to/weights.pt' instead: a torch "
            f"state dict of this model (e.g. a badseg last.pt) or of its backbone ({BACKBONES.get(name, 'encoder')}), "
            "e.g. saved on a machine with network by torch.save(timm.create_model(NAME, pretrained=True)"
            ".state_dict(), 'weights.pt')."
        )
    model = factory(num_classes=num_classes)
    report: LoadReport | None = None
    if pretrained == "imagenet":
        report = IMAGENET_LOADERS[name](model)
    elif str(pretrained) != "none":
        report = load_weights(model, pretrained)
    if report is not None:
        log.info("%s: loaded %d tensors from %s (unused: %d)", name, report.loaded, report.path, len(report.unused))
    model.load_report = report
    return model


def load_weights(model: SegModel, path: str | Path) -> LoadReport:
    """Load a local checkpoint into ``model`` (``torch.load(weights_only=True)``).

    Accepted: a state dict of the whole model, a dict with a ``"model"`` entry (badseg's
    ``last.pt``), or a backbone state dict in timm/torchvision key names. The first two load
    strictly; a backbone dict loads into the encoder part it matches best (timm features-only
    names ``stages_0`` are matched to ``stages.0``), and mismatches are reported.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (use 'none', 'imagenet' or a file path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # empty or cut-short file, or a pickle that runs code (refused by weights_only)
        raise ValueError(f"pretrained weights {path} cannot be read as a torch state dict: {load_failure(e)}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"pretrained weights {path} hold a {type(state).__name__}, not a state dict of tensors")
    if set(state) & set(model.state_dict()):
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
            raise ValueError(f"pretrained weights {path} do not fit model {model.name!r}: {detail[:300]}") from None
        return LoadReport(str(path), len(state), (), (), ())
    return _load_backbone(model, state, str(path))


def _load_backbone(model: SegModel, state: dict[str, torch.Tensor], path: str) -> LoadReport:
    candidates = [model.encoder] + [getattr(model.encoder, a) for a in ("model", "vit") if hasattr(model.encoder, a)]
    best, best_renamed, best_used = None, {}, set()
    for module in candidates:
        keys = set(module.state_dict())
        renamed, used = {}, set()
        for k, v in state.items():
            flat = re.sub(r"^(\w+)\.(\d+)\.", r"\1_\2.", k)  # timm FeatureListNet flattens stages.0 → stages_0
            target = k if k in keys else flat if flat in keys else None
            if target is not None:
                renamed[target] = v
                used.add(k)
        if len(renamed) > len(best_renamed):
            best, best_renamed, best_used = module, renamed, used
    if best is None:
        raise ValueError(f"{path}: no key matches model {model.name!r} or its backbone; e.g. {list(state)[:3]}")
    result = best.load_state_dict(best_renamed, strict=False)
    unused = tuple(k for k in state if k not in best_used)
    report = LoadReport(path, len(best_renamed), tuple(result.missing_keys), tuple(result.unexpected_keys), unused)
    if report.missing:
        log.warning(
            "%s: backbone weights missing %d keys, e.g. %s", model.name, len(report.missing), report.missing[:3]
        )
    return report
