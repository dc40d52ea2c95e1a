"""Denoisers: diffusers ModelMixin/ConfigMixin networks, all called as
model(x_t (B, k, d), t (B,), self_cond=None) -> (B, k, d)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Literal

from ldlm.denoisers import mlp, transformer, unet2d
from ldlm.errors import InputError

Arch = Literal["mlp", "unet2d", "transformer"]
Size = Literal["tiny", "small", "base"]

ARCHS = {
    "mlp": (mlp.MLPDenoiser, mlp.PRESETS),
    "unet2d": (unet2d.UNet2DDenoiser, unet2d.PRESETS),
    "transformer": (transformer.TransformerDenoiser, transformer.PRESETS),
}


def denoiser_class(arch: str):
    if arch not in ARCHS:
        raise InputError(f"Unknown denoiser type {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch][0]


def denoiser_config(arch: str, latent_shape: tuple[int, int], size: str = "small",
                    self_condition: bool = False, **overrides) -> dict:
    """The constructor arguments of `arch` at `size`, with `overrides` on top."""
    cls = denoiser_class(arch)
    presets = ARCHS[arch][1]
    if size not in presets:
        raise InputError(f"--size {size!r} is not one of {', '.join(presets)}")
    k, d = latent_shape
    config = {"latent_tokens": k, "latent_dim": d, **presets[size], "self_condition": self_condition}
    unknown = set(overrides) - set(inspect.signature(cls.__init__).parameters)
    if unknown:
        raise InputError(f"{arch} denoiser has no option(s) {', '.join(sorted(unknown))}")
    config.update(overrides)
    return config


def build_denoiser(arch: str, config: dict):
    """A fresh denoiser of type `arch` from its constructor arguments."""
    return denoiser_class(arch)(**config)


def load_denoiser(arch: str, path: str | Path):
    """A denoiser saved with `save_pretrained` in `path`."""
    return denoiser_class(arch).from_pretrained(str(path))


__all__ = ["ARCHS", "Arch", "Size", "build_denoiser", "denoiser_class", "denoiser_config",
           "load_denoiser"]
