"""diffusers' UNet2DModel on the latent laid out as an image (design A's
HFStyleUNetLatentDiffusion).

The k latent vectors become k channels and each vector of width d becomes an H x W grid.
H and W are chosen as the most square factor pair of d whose sides the down path can halve;
when d has none, the vector is zero-padded to the smallest width that has one and the
output is cropped back, so every latent shape works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ldlm.denoisers.embeddings import timesteps_like

PRESETS = {
    "tiny": {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4,
             "attention": False},
    "small": {"block_out_channels": (64, 128), "layers_per_block": 2, "norm_num_groups": 32,
              "attention": True},
    "base": {"block_out_channels": (128, 256, 256), "layers_per_block": 2, "norm_num_groups": 32,
             "attention": True},
}


def grid_shape(width: int, multiple: int) -> tuple[int, int]:
    """(H, W) with H * W >= width, both multiples of `multiple`, as square and as small as can be."""
    size = width
    while True:
        best = None
        for h in range(multiple, math.isqrt(size) + 1, multiple):
            if size % h == 0 and (size // h) % multiple == 0:
                best = (h, size // h)
        if best is not None:
            return best
        size += 1


class UNet2DDenoiser(ModelMixin, ConfigMixin):
    """model(x_t (B, k, d), t (B,)) -> (B, k, d) through a UNet2DModel on (B, k, H, W)."""

    conditional = False  # takes `cond` (ldlm train --conditional)
    modulation = None  # the option that --adaln turns on

    @register_to_config
    def __init__(
        self,
        latent_tokens: int = 1,  # k, the image channels
        latent_dim: int = 768,  # d, laid out as H x W (padded when needed)
        block_out_channels: tuple[int, ...] = (64, 128),  # UNet widths, one per resolution
        layers_per_block: int = 2,  # resnet layers per UNet block
        norm_num_groups: int = 32,  # GroupNorm groups (must divide every block width)
        attention: bool = True,  # attention blocks at the lower resolutions
        self_condition: bool = False,  # the previous x0 estimate as k more input channels
    ):
        super().__init__()
        blocks = len(block_out_channels)
        self.grid = grid_shape(latent_dim, 2 ** (blocks - 1))  # (H, W)
        down = ["DownBlock2D"] + ["AttnDownBlock2D" if attention else "DownBlock2D"] * (blocks - 1)
        up = ["AttnUpBlock2D" if attention else "UpBlock2D"] * (blocks - 1) + ["UpBlock2D"]
        self.unet = UNet2DModel(
            sample_size=self.grid, in_channels=latent_tokens * (2 if self_condition else 1),
            out_channels=latent_tokens, block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
            down_block_types=tuple(down), up_block_types=tuple(up),
            attention_head_dim=min(8, block_out_channels[-1]), add_attention=attention,
        )

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        b, k, d = x.shape
        h, w = self.grid
        return F.pad(x, (0, h * w - d)).reshape(b, k, h, w)  # (B, k, H, W)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                self_cond: torch.Tensor | None = None) -> torch.Tensor:
        b, k, d = x_t.shape
        img = self._to_grid(x_t)
        if self.config.self_condition:
            sc = torch.zeros_like(x_t) if self_cond is None else self_cond
            img = torch.cat([img, self._to_grid(sc)], dim=1)  # (B, 2k, H, W)
        out = self.unet(img, timesteps_like(t, b, x_t.device)).sample  # (B, k, H, W)
        return out.reshape(b, k, -1)[:, :, :d]  # crop the padding: (B, k, d)
