"""Masked autoencoder (MAE, He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

Pre-training without labels: cut the image into patches, remove a random 75% of them, encode only
the visible quarter with a ViT, and let a small decoder predict the pixels of the removed patches.

    image (B, C, H, W) -> patch tokens (B, N, D) + position   (the encoder's own PatchEmbed)
      -> random_masking: keep N_keep = N/4 per sample          (B, N_keep, D)
      -> [class token] + kept tokens -> encoder blocks, norm   (B, 1 + N_keep, D)
      -> decoder_embed to D_dec; append N - N_keep mask tokens; unshuffle; + decoder position
      -> decoder blocks, norm, a linear map to P*P*C pixels    (B, N, P*P*C)
      -> mean squared error on the removed patches only

The encoder is the course's `ViT` itself (`self.encoder`, with the same parameter names), so after
pre-training its weights load into a plain ViT for fine-tuning or a linear probe
(`encoder_state_dict`, `load_encoder`). Its decoder is "lightweight" as in the paper (§3: narrower
and shallower than the encoder, used only during pre-training) with fixed 2-D sin-cos position
embeddings, as the reference code's decoder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.nn as nn

from ..layers.blocks import EncoderBlock
from ..layers.init import init_linear_and_norm_
from ..layers.masking import random_masking, restore_order
from ..layers.patches import patchify, unpatchify
from ..layers.pos_embed import sincos_2d
from .preset import preset_builder
from .vit import ViT, ViTConfig


@dataclass
class MAEConfig:
    """Every hyper-parameter of an MAE. Defaults: `mae_fmnist` (28x28 Fashion-MNIST, patch 4 -> 49
    tokens, the encoder of `vit_fmnist_p4_cls`)."""

    image_size: Union[int, tuple[int, int]] = 28  # encoder input H (square) or (H, W)
    patch_size: int = 4            # P: 28 / 4 -> a 7x7 grid, 49 patches
    in_channels: int = 1           # C
    dim: int = 128                 # encoder width D (vit_fmnist_p4_cls)
    depth: int = 6                 # encoder blocks
    heads: int = 2                 # encoder heads
    mlp_dim: int = 256             # encoder MLP width
    decoder_dim: int = 64          # decoder width: half the encoder's (paper: 512 for ViT-L's 1024)
    decoder_depth: int = 2         # decoder blocks (paper: 8; its §4 finds even 1 block works for fine-tuning)
    decoder_heads: int = 2
    decoder_mlp_dim: int = 128
    mask_ratio: float = 0.75       # fraction of patches removed (paper: 75% is best, Fig. 5)
    norm_pix_loss: bool = True     # targets: each patch's pixels normalised by its own mean and std
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        # the encoder's checks (sizes positive, patch divides image, heads divide dim) are ViTConfig's
        self.encoder_config()
        for name in ("decoder_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim={self.decoder_dim} must be divisible by "
                             f"decoder_heads={self.decoder_heads}")
        if self.decoder_dim % 4:
            raise ValueError(f"decoder_dim must be a multiple of 4 (2-D sin-cos positions), got {self.decoder_dim}")
        if isinstance(self.mask_ratio, bool) or not isinstance(self.mask_ratio, (int, float)) \
                or not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be a float in [0, 1), got {self.mask_ratio!r}")
        if not isinstance(self.image_size, int):
            self.image_size = tuple(self.image_size)

    def encoder_config(self, num_classes: int = 0) -> ViTConfig:
        """The encoder as a plain ViT with a class token (num_classes=10 for fine-tuning)."""
        return ViTConfig(image_size=self.image_size, patch_size=self.patch_size, in_channels=self.in_channels,
                         num_classes=num_classes, dim=self.dim, depth=self.depth, heads=self.heads,
                         mlp_dim=self.mlp_dim, pool="cls", pos_embed="learned", norm_eps=self.norm_eps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def mae_loss(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int,
             norm_pix_loss: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error between predicted and true pixels, on the removed patches only.

    Args:
        images: (B, C, H, W) the input images.
        pred: (B, N, P*P*C) the decoder's pixel prediction for every patch.
        mask: (B, N), 1 = removed (counted), 0 = visible (ignored).
        norm_pix_loss: targets normalised per patch (its own mean and variance), the paper's
            better-fine-tuning variant (Table 1d).
    Returns:
        a scalar: the per-patch mean squared error, averaged over removed patches.
    """
    target = patchify(images, patch_size)  # (B, N, P*P*C)
    if pred.shape != target.shape:
        raise ValueError(f"pred must have the patches' shape {tuple(target.shape)}, got {tuple(pred.shape)}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must be (B, N) = {tuple(target.shape[:2])}, got {tuple(mask.shape)}")
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class MAE(nn.Module):
    """Masked autoencoder with the course's ViT as encoder; see the module docstring.

    `forward(images)` returns (loss, pred, mask): pred (B, N, P*P*C) in the (normalised, if
    norm_pix_loss) target space, mask (B, N) with 1 = removed.
    """

    def __init__(self, config: MAEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or MAEConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = c = config
        self.encoder = ViT(c.encoder_config(num_classes=0))
        grid = self.encoder.grid_size
        self.decoder_embed = nn.Linear(c.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        # fixed, with a zero row for the class token (MAE's convention)
        self.register_buffer("decoder_pos_embed", sincos_2d(grid, c.decoder_dim, num_prefix_tokens=1))
        self.decoder_blocks = nn.ModuleList([
            EncoderBlock(c.decoder_dim, c.decoder_heads, c.decoder_mlp_dim, norm_eps=c.norm_eps)
            for _ in range(c.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(c.decoder_dim, eps=c.norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_dim, c.patch_size ** 2 * c.in_channels)
        init_linear_and_norm_(nn.ModuleList([self.decoder_embed, self.decoder_blocks, self.decoder_norm,
                                             self.decoder_pred]))
        nn.init.normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward_encoder(self, images: torch.Tensor, mask_ratio: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> latent (B, 1 + N_keep, D), mask (B, N), ids_restore (B, N)."""
        enc = self.encoder
        enc._check_input(images)
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        x = enc.patch_embed(images)                       # (B, N, D)
        x = x + enc.pos_embed[:, 1:]                      # position before masking: kept tokens keep theirs
        x, mask, ids_restore = random_masking(x, ratio)   # (B, N_keep, D)
        cls = enc.cls_token + enc.pos_embed[:, :1]        # (1, 1, D)
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N_keep, D)
        for block in enc.blocks:
            x = block(x)
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1 + N_keep, D) -> pixel predictions (B, N, P*P*C) for every patch."""
        x = self.decoder_embed(latent)                    # (B, 1 + N_keep, D_dec)
        b, n = ids_restore.shape
        masks = self.mask_token.expand(b, n + 1 - x.shape[1], -1)  # (B, N - N_keep, D_dec)
        patches = restore_order(torch.cat([x[:, 1:], masks], dim=1), ids_restore)  # (B, N, D_dec)
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed  # (B, 1 + N, D_dec)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (B, N, P*P*C): drop the class token

    def forward(self, images: torch.Tensor, mask_ratio: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        loss = mae_loss(images, pred, mask, self.config.patch_size, self.config.norm_pix_loss, self.config.norm_eps)
        return loss, pred, mask

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: float | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For figures: (reconstruction (B, C, H, W) in the images' own scale, mask (B, N)).

        With norm_pix_loss the decoder predicts normalised pixels; each predicted patch is put
        back on the scale of the true patch's mean and variance (as the paper's visualisations).
        Visible patches show the input itself."""
        p = self.config.patch_size
        _, pred, mask = self(images, mask_ratio)          # (B, N, P*P*C), (B, N)
        target = patchify(images, p)
        if self.config.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            pred = pred * (var + self.config.norm_eps) ** 0.5 + mean
        merged = torch.where(mask[..., None].bool(), pred, target)
        return unpatchify(merged, p, images.shape[-2:]), mask

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights, named as a plain `ViT`'s (no head)."""
        return {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}


def load_encoder(vit: ViT, encoder_state: dict[str, torch.Tensor]) -> ViT:
    """Copy an MAE encoder's weights into `vit` (same shape, any head); its head stays as it was
    (fine-tuning trains a new one). Raises ValueError when anything but the head is missing."""
    try:
        missing, unexpected = vit.load_state_dict(encoder_state, strict=False)
    except RuntimeError as exc:  # a shape differs (another grid, width, or no class token)
        raise ValueError(f"the encoder's weights do not fit this ViT ({str(exc).splitlines()[-1].strip()}); "
                         "build it with MAEConfig.encoder_config()") from None
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise ValueError(f"the encoder's weights do not fit this ViT: missing {missing}, "
                         f"unexpected {list(unexpected)}; build it with MAEConfig.encoder_config()")
    return vit


def _builder(name: str, doc: str, **defaults: Any) -> Callable[..., MAE]:
    return preset_builder(MAE, MAEConfig, name, doc, **defaults)


mae_fmnist = _builder("mae_fmnist", "MAE for 28x28 Fashion-MNIST: vit_fmnist_p4_cls's encoder (49 tokens), "
                      "decoder 64 wide, 2 blocks; mask ratio 0.75, normalised-pixel targets.")

PRESETS: dict[str, Callable[..., MAE]] = {"mae_fmnist": mae_fmnist}
