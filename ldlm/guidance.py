"""Classifier-free guidance around a conditional denoiser (Ho & Salimans 2022).

Training replaces each row's condition by the learned null condition with probability
`condition_dropout` (`drop_conditions`); sampling mixes the conditional and unconditional
outputs, out = uncond + W * (cond - uncond), both in one batched forward (`Guided`).
`ConditionedDenoiser` fixes a condition batch so that the objective calls a conditional
denoiser as it calls any other: model(x_t, t, self_cond=None).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ldlm.errors import InputError


def drop_conditions(cond: torch.Tensor, null: torch.Tensor, p: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Replace each row of `cond` (B,) or (B, L) by `null` (one row) with probability p."""
    if p <= 0:
        return cond
    drop = torch.rand(cond.shape[0], generator=generator) < p  # (B,)
    drop = drop.to(cond.device).reshape(-1, *([1] * (cond.ndim - 1)))
    return torch.where(drop, null.to(cond.device).expand_as(cond), cond)


def check_guidance_scale(scale: float) -> None:
    if not math.isfinite(scale) or scale < 0:
        raise InputError(f"--guidance-scale {scale} must be a finite number >= 0 (0: unconditional, "
                         "1: plain conditional, > 1: stronger guidance)")


class ConditionedDenoiser(nn.Module):
    """The denoiser with a fixed condition batch, called as the objective calls a denoiser:
    model(x_t, t, self_cond=None). Used for the training loss and for sampling."""

    def __init__(self, model: nn.Module, cond: torch.Tensor):
        super().__init__()
        self.model, self.cond = model, cond

    def forward(self, x_t, t, self_cond=None):
        return self.model(x_t, t, self_cond=self_cond, cond=self.cond)


class Guided(nn.Module):
    """Classifier-free guidance around a conditional denoiser:
    out = uncond + W * (cond - uncond), with cond and uncond rows in one forward.
    W = 0 runs only the null condition and W = 1 only the condition (the same bits as
    unconditional and plain conditional sampling)."""

    def __init__(self, model: nn.Module, cond: torch.Tensor, null: torch.Tensor, scale: float):
        super().__init__()
        check_guidance_scale(scale)
        self.model, self.cond, self.null, self.scale = model, cond, null, float(scale)

    def forward(self, x_t, t, self_cond=None):
        if self.scale == 0:
            return self.model(x_t, t, self_cond=self_cond, cond=self.null)
        if self.scale == 1:
            return self.model(x_t, t, self_cond=self_cond, cond=self.cond)
        n = x_t.shape[0]
        both = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                          self_cond=None if self_cond is None else torch.cat([self_cond, self_cond]),
                          cond=torch.cat([self.cond, self.null]))
        c, u = both[:n], both[n:]
        return u + self.scale * (c - u)


def guided(model: nn.Module, conditions: np.ndarray, scale: float, device) -> nn.Module:
    """`model` guided towards `conditions` (n,) or (n, L) with scale W (see Guided)."""
    cond = torch.from_numpy(np.asarray(conditions)).long().to(device)
    null = model.null_condition(cond.shape[0], device)
    return Guided(model, cond, null, scale)


__all__ = ["ConditionedDenoiser", "Guided", "check_guidance_scale", "drop_conditions", "guided"]
