"""Every registered model: shapes, gradients, feature maps, checkpoints, pretrained weights."""

from __future__ import annotations

import time

import pytest
import torch

from badseg.models import MODELS, PretrainedUnavailableError, SegModel, build_model
from badseg.models.effl0_weights import package_weights_path
from badseg.models.factory import IMAGENET_LOADERS
from badseg.registry import UnknownNameError

NUM_CLASSES = 5
FEATURE_STRIDE = {"pspnet-r50": 8, "deeplabv3-r50": 8}  # all others: 4

_cache: dict[str, SegModel] = {}


def _model(name: str) -> SegModel:
    if name not in _cache:
        torch.manual_seed(0)
        _cache[name] = build_model(name, NUM_CLASSES)
    return _cache[name]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward_features(name: str) -> None:
    model = _model(name).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES, 64, 64)
    logits.logsumexp(1).mean().backward()
    grad = model.classifier.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    model.eval()
    seen = []
    handle = model.feature_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        feats = model.features(x)
        odd = model(torch.rand(1, 3, 50, 70))
    handle.remove()
    stride = FEATURE_STRIDE.get(name, 4)
    assert model.feature_stride == stride
    assert feats.shape == (2, model.feature_dim, 64 // stride, 64 // stride)
    assert seen[0] == feats.shape  # the hook on feature_layer sees the feature map
    assert odd.shape == (1, NUM_CLASSES, 50, 70)


@pytest.mark.parametrize("name", MODELS.names())
def test_checkpoint_round_trip(name: str, tmp_path) -> None:
    model = _model(name).eval()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    restored = build_model(name, NUM_CLASSES, pretrained=path).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in IMAGENET_LOADERS])
def test_imagenet_without_offline_weights_fails_fast(name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(PretrainedUnavailableError, match="pretrained='/path/to/weights.pt'"):
        build_model(name, NUM_CLASSES, pretrained="imagenet")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("name", ["deeplabv3plus-effl0", "fpn-effl0"])
def test_effl0_imagenet_loads_package_weights(name: str) -> None:
    package = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    model = build_model(name, NUM_CLASSES, pretrained="imagenet")
    report = model.load_report
    assert report.missing == () and report.unexpected == ()
    assert report.loaded == 288 and set(report.unused) == {
        k for k in package if k.split(".")[0] in ("_conv_head", "_bn1", "_fc")
    }
    encoder = model.encoder.model
    assert torch.equal(encoder.conv_stem.weight, package["_conv_stem.weight"])
    assert torch.equal(encoder.blocks[6][0].conv_pwl.weight, package["_blocks.15._project_conv.weight"])
    assert torch.equal(encoder.blocks[0][0].conv_pw.weight, package["_blocks.0._project_conv.weight"])
    random = _model(name).encoder.model
    assert not torch.equal(random.conv_stem.weight, encoder.conv_stem.weight)


def test_backbone_state_dict_loads_into_encoder(tmp_path) -> None:
    source = build_model("deeplabv3plus-effl0", NUM_CLASSES, pretrained="imagenet")
    path = tmp_path / "timm_backbone.pt"
    torch.save(source.encoder.model.state_dict(), path)  # timm key names, no "encoder." prefix
    model = build_model("deeplabv3plus-effl0", NUM_CLASSES, pretrained=path)
    assert model.load_report.missing == () and model.load_report.loaded == 288
    assert torch.equal(model.encoder.model.conv_stem.weight, source.encoder.model.conv_stem.weight)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="segformer-b0"):
        build_model("no-such-model", NUM_CLASSES)
