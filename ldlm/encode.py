"""Stage: a text dataset -> a zarr latent store, resumable chunk by chunk.

Rows are processed one store chunk at a time. Inside a chunk, rows are sorted by token
length into batches (less padding), encoded, and put back in input order before the
chunk is written and marked done. A rerun with the same arguments skips the done chunks;
batches never cross chunks, so a resumed store is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.autoencoder import LatentAutoencoder, load_autoencoder
from ldlm.data import TextRows
from ldlm.errors import InputError
from ldlm.progress import SILENT, Reporter
from ldlm.store import LatentStore, is_store


@dataclass
class EncodeResult:
    store: LatentStore
    rows: int  # rows in the store
    encoded: int  # rows encoded by this call (0 when the store was already complete)
    skipped: int  # dataset rows dropped as empty / not text
    truncated: int  # rows longer than the autoencoder's max_length


def encode_chunk(model: LatentAutoencoder, texts: list[str], batch_size: int,
                 sort_by_length: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode texts in length-sorted batches; returns latents (n, k, d) and token lengths (n,)."""
    tok = model.encoder_tokenizer
    ids = tok(texts, truncation=False)["input_ids"]
    lengths = np.array([len(x) for x in ids], dtype=np.int32)
    limit = model.config.max_length
    long = np.flatnonzero(lengths > limit)
    if len(long):  # truncate as training did (the tokenizer keeps its closing special tokens)
        cut = tok([texts[j] for j in long], truncation=True, max_length=limit)["input_ids"]
        for j, row in zip(long, cut, strict=True):
            ids[j] = row
    order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(texts))
    out = np.empty((len(texts), *model.latent_shape), dtype=np.float32)
    pad = tok.pad_token_id or 0
    for i in range(0, len(texts), batch_size):
        idx = order[i : i + batch_size]
        rows = [ids[j] for j in idx]
        width = max(len(r) for r in rows)
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for r, row in enumerate(rows):
            batch[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        with torch.no_grad():
            z = model.encode(batch.to(model.device), mask.to(model.device))
        out[idx] = z.float().cpu().numpy()
    return out, lengths


def _identity(rows: TextRows, model: LatentAutoencoder, autoencoder: str, limit: int | None,
              batch_size: int, chunk_rows: int) -> dict:
    return {
        "latent_space": model.fingerprint,
        "autoencoder": str(Path(autoencoder).resolve()) if Path(autoencoder).exists() else autoencoder,
        "source": rows.source, "split": rows.split, "column": rows.column, "limit": limit,
        "data_digest": rows.digest(), "skipped_rows": rows.skipped,
        "batch_size": batch_size, "chunk_rows": chunk_rows,
    }


def _check_same(store: LatentStore, want: dict, path: str) -> None:
    have = store.attrs
    if have.get("latent_space") != want["latent_space"]:
        raise InputError(
            f"store {path!r} holds latents of autoencoder {have.get('latent_space')}, not "
            f"{want['latent_space']} ({want['autoencoder']}); use another --store or --overwrite"
        )
    for key in ("source", "split", "column", "limit", "data_digest"):
        if have.get(key) != want[key]:
            raise InputError(
                f"store {path!r} was made from other data ({key} {have.get(key)!r}, now "
                f"{want[key]!r}); use another --store or --overwrite"
            )
    for key in ("batch_size", "chunk_rows"):
        if have.get(key) != want[key]:
            raise InputError(
                f"store {path!r} is being written with {key} {have.get(key)}, not {want[key]}; "
                f"rerun with --{key.replace('_', '-')} {have.get(key)} to resume, or --overwrite"
            )


def encode_dataset(
    rows: TextRows,
    autoencoder: str | Path,
    store_path: str | Path,
    *,
    batch_size: int = 128,
    chunk_rows: int = 4096,
    limit: int | None = None,
    overwrite: bool = False,
    device: str | None = None,
    reporter: Reporter = SILENT,
    model: LatentAutoencoder | None = None,
) -> EncodeResult:
    """Encode `rows` with the autoencoder into the store, resuming an interrupted run."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1")
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows {chunk_rows} must be at least 1")
    path = str(store_path)
    if model is None:
        model = load_autoencoder(autoencoder, device=device)
    want = _identity(rows, model, str(autoencoder), limit, batch_size, chunk_rows)
    n = len(rows.texts)

    store = None
    if not overwrite and is_store(path):
        store = LatentStore.open(path, require_complete=False, writable=True)
        _check_same(store, want, path)
        if store.complete:
            return EncodeResult(store, n, 0, rows.skipped, int(store.attrs.get("truncated_rows", 0)))
        store.ensure_arrays()
    elif not overwrite and Path(path).exists() and "://" not in path and any(Path(path).iterdir()):
        raise InputError(
            f"--store {path!r} exists and is not an ldlm store; choose another path or pass "
            "--overwrite to replace a zarr store"
        )
    if store is None:
        store = LatentStore.create(path, rows=n, latent_shape=model.latent_shape,
                                   chunk_rows=chunk_rows, attributes=want)

    done = store.done_chunks()
    pending = [c for c in range(store.num_chunks) if not done[c]]
    reporter.start("encode", total=n, unit="rows")
    reporter.advance(int(sum(min(chunk_rows, n - c * chunk_rows) for c in np.flatnonzero(done))))
    model.eval()
    encoded = 0
    for chunk in pending:
        start, stop = store.chunk_bounds(chunk)
        texts = rows.texts[start:stop]
        latents, lengths = encode_chunk(model, texts, batch_size)
        store.write_chunk(chunk, latents, texts, lengths)
        encoded += stop - start
        reporter.advance(stop - start)
    reporter.stop()
    truncated = int(sum(store.array("lengths")[:] > model.config.max_length))
    store.update_attributes({"truncated_rows": truncated})
    store.finalize()
    return EncodeResult(store, n, encoded, rows.skipped, truncated)
