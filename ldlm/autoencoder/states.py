"""A frozen encoder's hidden states, computed once per corpus.

With a frozen pretrained encoder (`train-autoencoder --encoder PATH`), the encoder's output for
a text never changes while the rest trains, yet running it again on every step cost most of a
step (all-MiniLM-L6-v2: about 13 ms a text on one CPU thread). `encoder_states` runs it once
over the training texts, in length-sorted batches, and keeps the last hidden states on disk:
one float16 array of all the texts' token states end to end (`<key>.states.npy`) and the
offset where each text starts (`<key>.offsets.npy`), read back as a memory map, so a corpus
larger than memory trains the same way. The key is a hash of the encoder's weights and the
token ids it reads, so a second run on the same corpus with the same encoder (another
pooling, decoder or latent shape) reuses the file, and anything else makes a new one.

The files live in `$LDLM_CACHE` (default `~/.cache/ldlm`), under `encoder-states/`; they are
written beside their final name and renamed into place, so an interrupted run leaves none
half-written. Delete the folder to free the space.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ldlm.progress import SILENT, Reporter

BATCH = 64  # texts run through the encoder together


def cache_dir() -> Path:
    """Where encoder states are kept: $LDLM_CACHE/encoder-states, default ~/.cache/ldlm/..."""
    root = os.environ.get("LDLM_CACHE") or Path.home() / ".cache" / "ldlm"
    return Path(root) / "encoder-states"


def states_key(encoder: torch.nn.Module, ids: list[list[int]]) -> str:
    """A hash of the encoder's weights and of the token ids it is to read."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    for row in ids:
        h.update(np.asarray(row, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


class EncoderStates:
    """The last hidden states of n texts: `flat` (sum of lengths, H) float16 and `offsets` (n + 1,)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, path: Path | None = None):
        self.flat, self.offsets, self.path = flat, offsets, path

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.flat.shape[0]) * int(self.flat.shape[1]) * self.flat.itemsize

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """States (B, T, H) float32, zero-padded, and their mask (B, T) for texts `idx`."""
        spans = [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in idx]
        width = max(b - a for a, b in spans)
        out = np.zeros((len(spans), width, self.flat.shape[1]), dtype=np.float32)
        mask = np.zeros((len(spans), width), dtype=np.int64)
        for j, (a, b) in enumerate(spans):
            out[j, : b - a] = self.flat[a:b]
            mask[j, : b - a] = 1
        return torch.from_numpy(out), torch.from_numpy(mask)


def _open(base: Path) -> EncoderStates | None:
    states, offsets = base.with_suffix(".states.npy"), base.with_suffix(".offsets.npy")
    if not (states.exists() and offsets.exists()):
        return None
    try:
        return EncoderStates(np.load(states, mmap_mode="r"), np.load(offsets), states)
    except (OSError, ValueError):  # damaged: computed again below
        return None


@torch.no_grad()
def encoder_states(encoder: torch.nn.Module, ids: list[list[int]], pad_id: int,
                   reporter: Reporter = SILENT, folder: Path | None = None) -> EncoderStates:
    """The last hidden states of `encoder` over each row of token ids, from the cache when it
    holds them, else computed once (eval mode, length-sorted batches) and saved there."""
    from ldlm.atomic import atomic_file
    from ldlm.autoencoder.tokenizer import pad_rows

    folder = folder or cache_dir()
    base = folder / states_key(encoder, ids)
    found = _open(base)
    if found is not None and len(found) == len(ids):
        reporter.log(f"reusing the frozen encoder's states of {len(ids):,} texts ({found.path})")
        return found
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(r) for r in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hidden = _hidden_size(encoder)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    reporter.start("encoder states", total=len(ids), unit="texts")
    with atomic_file(base.with_suffix(".states.npy"), "wb") as fh:
        flat = np.lib.format.open_memmap(fh.name, mode="w+", dtype=np.float16,
                                         shape=(int(offsets[-1]), hidden))
        order = np.argsort(lengths, kind="stable")
        for i in range(0, len(ids), BATCH):
            idx = order[i : i + BATCH]
            batch, mask = pad_rows([ids[j] for j in idx], pad_id)
            out = encoder(input_ids=batch.to(device), attention_mask=mask.to(device)).last_hidden_state
            out = out.float().cpu().numpy().astype(np.float16)
            for row, j in enumerate(idx):
                flat[offsets[j] : offsets[j + 1]] = out[row, : lengths[j]]
            reporter.advance(len(idx))
        flat.flush()
        del flat
    reporter.stop()
    with atomic_file(base.with_suffix(".offsets.npy"), "wb") as fh:
        np.save(fh, offsets)
    encoder.train(was_training)
    return _open(base)


def _hidden_size(encoder: torch.nn.Module) -> int:
    cfg = encoder.config
    for key in ("hidden_size", "d_model", "dim", "n_embd"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ValueError(f"cannot find the hidden size of the {cfg.model_type} encoder")


__all__ = ["EncoderStates", "cache_dir", "encoder_states", "states_key"]
