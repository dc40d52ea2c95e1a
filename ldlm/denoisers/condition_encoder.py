"""Condition inputs shared by the denoisers (see ldlm.conditions for the encoding).

label: an embedding table of `classes + 1` rows (the last one is the learned null class).
text:  token embeddings + learned positions + a few pre-LN transformer layers, trained
       jointly with the denoiser; the transformer denoiser attends to the encoded tokens as
       a prefix, the MLP denoiser takes their masked mean.
"""

from __future__ import annotations

import torch
from torch import nn

from ldlm.errors import InputError

PAD = 0  # ldlm.conditions.PAD


def check_condition_options(condition_type: str | None, classes: int, length: int) -> None:
    if condition_type not in (None, "label", "text"):
        raise InputError(f"condition_type {condition_type!r} is not one of label, text")
    if condition_type and classes < 1:
        raise InputError(f"condition_classes {classes} must be at least 1 for a conditional denoiser")
    if condition_type == "text" and length < 1:
        raise InputError(f"condition_length {length} must be at least 1 for text conditions")


def null_condition(config, b: int, device) -> torch.Tensor | None:
    """The learned null condition for b rows of a denoiser with this config (None when it is
    unconditional): the extra label id, or a token row holding only the NULL token."""
    kind = config.condition_type
    if kind == "label":
        return torch.full((b,), config.condition_classes, dtype=torch.long, device=device)
    if kind == "text":
        null = torch.zeros(b, config.condition_length, dtype=torch.long, device=device)
        null[:, 0] = 1  # ldlm.conditions.NULL
        return null
    return None


class ConditionEncoder(nn.Module):
    """Token ids (B, L) -> encoded tokens (B, L, W) and the padding mask (B, L) (True = pad)."""

    def __init__(self, vocab: int, length: int, width: int, heads: int, layers: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, width, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(1, length, width))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.long()
        used = int((ids != PAD).sum(1).max()) if ids.numel() else 1
        ids = ids[:, : max(1, used)]  # trailing padding of the whole batch dropped (positions kept)
        mask = ids == PAD  # (B, L)
        mask[:, 0] = False  # a row is never all padding (the null condition is one token)
        h = self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, L, W)
        if self.layers is not None:
            h = self.layers(h, src_key_padding_mask=mask)
        return self.norm(h), mask

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        """The masked mean of the encoded tokens: (B, L) -> (B, W)."""
        h, mask = self(ids)
        keep = (~mask).unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return (h * keep).sum(1) / keep.sum(1)
