"""Denoisers: diffusers ModelMixin/ConfigMixin networks, all called as
model(x_t (B, k, d), t (B,), self_cond=None, cond=None) -> (B, k, d).

ARCHS names each one's module and class; a module is imported only when its denoiser is
built or loaded, so the command line reads the names without importing torch. Each class
declares what it supports: `conditional` (takes `cond`) and `modulation` (the constructor
option that `--adaln` turns on, or None). Adding a denoiser: its file and one entry here.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from ldlm.errors import InputError
from ldlm.recipe import SIZES

ARCHS = {
    "mlp": ("ldlm.denoisers.mlp", "MLPDenoiser"),
    "unet2d": ("ldlm.denoisers.unet2d", "UNet2DDenoiser"),
    "transformer": ("ldlm.denoisers.transformer", "TransformerDenoiser"),
}


def denoiser_class(arch: str):
    """The class of denoiser type `arch` (InputError for an unknown one)."""
    if arch not in ARCHS:
        raise InputError(f"Unknown denoiser type {arch!r}; choose one of {', '.join(ARCHS)}")
    module, name = ARCHS[arch]
    return getattr(importlib.import_module(module), name)


def presets(arch: str) -> dict:
    """The size presets (SIZES -> constructor options) of denoiser type `arch`."""
    return importlib.import_module(ARCHS[arch][0]).PRESETS if arch in ARCHS else {}


def denoiser_config(arch: str, latent_shape: tuple[int, int], size: str = "small",
                    self_condition: bool = False, **overrides) -> dict:
    """The constructor arguments of `arch` at `size`, with `overrides` on top."""
    cls = denoiser_class(arch)
    table = presets(arch)
    if size not in table:
        raise InputError(f"--size {size!r} is not one of {', '.join(table)}")
    k, d = latent_shape
    config = {"latent_tokens": k, "latent_dim": d, **table[size], "self_condition": self_condition}
    unknown = set(overrides) - set(inspect.signature(cls.__init__).parameters)
    if unknown:
        raise InputError(f"{arch} denoiser has no option(s) {', '.join(sorted(unknown))}")
    config.update(overrides)
    return config


def build_denoiser(arch: str, config: dict):
    """A fresh denoiser of type `arch` from its constructor arguments."""
    return denoiser_class(arch)(**config)


def load_denoiser(arch: str, path: str | Path):
    """A denoiser saved with `save_pretrained` in `path` (safetensors only: no pickle fallback)."""
    return denoiser_class(arch).from_pretrained(str(path), use_safetensors=True)


def conditional_archs() -> list[str]:
    """The denoiser types that take conditions (`ldlm train --conditional`)."""
    return [a for a in ARCHS if denoiser_class(a).conditional]


__all__ = ["ARCHS", "SIZES", "build_denoiser", "conditional_archs", "denoiser_class",
           "denoiser_config", "load_denoiser", "presets"]
