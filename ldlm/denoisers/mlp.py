"""The MLP "UNet" for latent vectors (design A's LatentDiffusionModel).

The latent (k, d) is flattened to one vector; residual MLP blocks run on a down path of
shrinking widths, a middle block, then an up path that concatenates the matching skip.
The timestep embedding is added inside every block; a condition (a class embedding, or the
masked mean of an encoded conditioning text) is added to the timestep embedding.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ldlm.denoisers.condition_encoder import ConditionEncoder, check_condition_options, null_condition
from ldlm.denoisers.embeddings import TimestepMLP, timesteps_like

PRESETS = {
    "tiny": {"widths": (64, 32), "time_dim": 32},
    "small": {"widths": (512, 256), "time_dim": 128},
    "base": {"widths": (2048, 1024, 512), "time_dim": 256},
}


class ResBlock(nn.Module):
    """x + MLP(LayerNorm(x) + time), width preserved; with `film`, the embedding (timestep and
    condition) scales and shifts the normalised input instead: LayerNorm(x) * (1 + a) + b."""

    def __init__(self, width: int, time_dim: int, dropout: float, film: bool = False):
        super().__init__()
        self.film = film
        self.norm = nn.LayerNorm(width)
        self.time = nn.Linear(time_dim, 2 * width if film else width)
        if film:  # starts as the plain shift: scale 1
            nn.init.zeros_(self.time.weight[:width])
            nn.init.zeros_(self.time.bias[:width])
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        if self.film:
            scale, shift = self.time(temb).chunk(2, dim=-1)  # (B, W) each
            h = self.norm(x) * (1 + scale) + shift
        else:
            h = self.norm(x) + self.time(temb)  # (B, W)
        return x + self.fc2(self.drop(nn.functional.silu(self.fc1(h))))


class MLPDenoiser(ModelMixin, ConfigMixin):
    """Residual MLP U-Net over the flattened latent: model(x_t (B, k, d), t (B,)) -> (B, k, d)."""

    conditional = True  # takes `cond` (ldlm train --conditional)
    modulation = "film"  # the option that --adaln turns on

    @register_to_config
    def __init__(
        self,
        latent_tokens: int = 1,  # k
        latent_dim: int = 768,  # d
        widths: tuple[int, ...] = (512, 256),  # widths of the down path (the up path mirrors it)
        time_dim: int = 128,  # timestep embedding width
        dropout: float = 0.0,
        self_condition: bool = False,  # input also takes the previous x0 estimate
        condition_type: str | None = None,  # None (unconditional) | label | text
        condition_classes: int = 0,  # label: classes (+1 null row); text: token vocabulary size
        condition_length: int = 0,  # text: condition tokens
        condition_layers: int = 2,  # text: layers of the condition encoder
        film: bool = False,  # blocks scale and shift by the embedding (FiLM) instead of adding it
    ):
        super().__init__()
        check_condition_options(condition_type, condition_classes, condition_length)
        flat = latent_tokens * latent_dim
        widths = tuple(widths)
        self.time = TimestepMLP(time_dim)
        self.inp = nn.Linear(flat * (2 if self_condition else 1), widths[0])
        self.down = nn.ModuleList(ResBlock(w, time_dim, dropout, film) for w in widths)
        self.down_proj = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.mid = ResBlock(widths[-1], time_dim, dropout, film)
        self.up_proj = nn.ModuleList(nn.Linear(2 * w, w) for w in reversed(widths))
        self.up = nn.ModuleList(ResBlock(w, time_dim, dropout, film) for w in reversed(widths))
        self.up_out = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[::-1][:-1], widths[::-1][1:],
                                                                   strict=True))
        self.out_norm = nn.LayerNorm(widths[0])
        self.out = nn.Linear(widths[0], flat)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.label = self.cond_encoder = None
        if condition_type == "label":
            self.label = nn.Embedding(condition_classes + 1, time_dim)  # the last row: null
        elif condition_type == "text":
            heads = 4 if time_dim % 4 == 0 else 1
            self.cond_encoder = ConditionEncoder(condition_classes, condition_length, time_dim, heads,
                                                 condition_layers, dropout)
            self.cond_proj = nn.Linear(time_dim, time_dim)

    def null_condition(self, b: int, device) -> torch.Tensor | None:
        """The learned null condition for b rows (None for an unconditional denoiser)."""
        return null_condition(self.config, b, device)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        # cond: label ids (B,) or condition token ids (B, L); None: the null condition
        b, k, d = x_t.shape
        h = x_t.reshape(b, k * d)  # (B, k*d)
        if self.config.self_condition:
            sc = torch.zeros_like(x_t) if self_cond is None else self_cond
            h = torch.cat([h, sc.reshape(b, k * d)], dim=-1)  # (B, 2*k*d)
        temb = self.time(timesteps_like(t, b, x_t.device)).to(h.dtype)  # (B, T)
        if self.config.condition_type and cond is None:
            cond = self.null_condition(b, x_t.device)
        if self.label is not None:
            temb = temb + self.label(cond.long()).to(h.dtype)
        elif self.cond_encoder is not None:
            temb = temb + self.cond_proj(self.cond_encoder.pooled(cond)).to(h.dtype)
        h = self.inp(h)  # (B, W0)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.down_proj):
                h = self.down_proj[i](h)  # (B, W_{i+1})
        h = self.mid(h, temb)
        for i, block in enumerate(self.up):
            h = self.up_proj[i](torch.cat([h, skips.pop()], dim=-1))  # (B, W)
            h = block(h, temb)
            if i < len(self.up_out):
                h = self.up_out[i](h)  # (B, next wider W)
        return self.out(self.out_norm(h)).reshape(b, k, d)
