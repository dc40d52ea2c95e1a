"""Texts -> latents in padded batches sorted by token length, truncated as training did.

`ldlm encode` runs this on each store chunk; `LatentAutoencoder.encode_texts` on any list of
texts (variations, interpolation, reconstruction), so every latent of a text is computed the
same way. Sorting by length cuts the padding (benchmarks/README.md, "Encode throughput").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldlm.autoencoder.tokenizer import pad_rows


@dataclass
class PreparedChunk:
    """A chunk tokenised and cut into padded, length-sorted batches (CPU tensors)."""

    batches: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]]  # (row idx, ids (B, T), mask (B, T))
    lengths: np.ndarray  # (n,) encoder tokens per row before truncation


def prepare_chunk(tokenizer, texts: list[str], max_length: int, batch_size: int,
                  sort_by_length: bool = True) -> PreparedChunk:
    """Tokenise texts (truncating as training did) and build padded batches."""
    ids = tokenizer(texts, truncation=False)["input_ids"]
    lengths = np.array([len(x) for x in ids], dtype=np.int32)
    long = np.flatnonzero(lengths > max_length)
    if len(long):  # the tokenizer truncates, keeping its closing special tokens
        cut = tokenizer([texts[j] for j in long], truncation=True, max_length=max_length)["input_ids"]
        for j, row in zip(long, cut, strict=True):
            ids[j] = row
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(texts))
    pad = tokenizer.pad_token_id or 0
    batches = []
    for i in range(0, len(texts), batch_size):
        idx = order[i : i + batch_size]
        batches.append((idx, *pad_rows([ids[j] for j in idx], pad)))
    return PreparedChunk(batches, lengths)


def encode_prepared(model, prepared: PreparedChunk) -> np.ndarray:
    """Run the encoder over prepared batches; latents (n, k, d) in input order."""
    out = np.empty((len(prepared.lengths), *model.latent_shape), dtype=np.float32)
    with torch.no_grad():
        for idx, ids, mask in prepared.batches:
            z = model.encode(ids.to(model.device), mask.to(model.device))  # (B, k, d)
            out[idx] = z.float().cpu().numpy()
    return out


def encode_chunk(model, texts: list[str], batch_size: int,
                 sort_by_length: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode texts in length-sorted batches; returns latents (n, k, d) and token lengths (n,)."""
    prepared = prepare_chunk(model.encoder_tokenizer, texts, model.config.max_length, batch_size,
                             sort_by_length)
    return encode_prepared(model, prepared), prepared.lengths


__all__ = ["PreparedChunk", "encode_chunk", "encode_prepared", "prepare_chunk"]
