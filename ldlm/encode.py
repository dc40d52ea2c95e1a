"""Stage: a text dataset -> a zarr latent store, resumable chunk by chunk.

Rows are processed one store chunk at a time. Inside a chunk, rows are sorted by token
length into batches (less padding), encoded, and put back in input order before the
chunk is written and marked done. A rerun with the same arguments skips the done chunks;
batches never cross chunks, so a resumed store is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ldlm.atomic import replace_path
from ldlm.autoencoder import LatentAutoencoder, load_autoencoder
from ldlm.autoencoder.batching import PreparedChunk, encode_prepared, prepare_chunk
from ldlm.conditions import ConditionSpec
from ldlm.data import TextRows
from ldlm.distributed import Ranks, ranks
from ldlm.errors import InputError
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import CHUNK_ROWS, ENCODE_BATCH
from ldlm.store import LatentStore, check_replaceable, is_store, is_url, store_exists, store_location


@dataclass
class EncodeResult:
    store: LatentStore
    rows: int  # rows in the store
    encoded: int  # rows encoded by this call (0 when the store was already complete)
    skipped: int  # dataset rows dropped as empty / not text
    truncated: int  # rows longer than the autoencoder's max_length


def _condition_digest(values: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def _identity(rows: TextRows, model: LatentAutoencoder, autoencoder: str, limit: int | None,
              batch_size: int, chunk_rows: int, spec: ConditionSpec | None = None) -> dict:
    conditions = {}
    if spec is not None:
        conditions = {"condition": spec.to_dict(), "condition_digest": _condition_digest(rows.conditions)}
    return {
        **conditions,
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
    for key in ("source", "split", "column", "limit", "data_digest", "condition_digest"):
        if have.get(key) != want.get(key):
            raise InputError(
                f"store {path!r} was made from other data ({key} {have.get(key)!r}, now "
                f"{want.get(key)!r}); use another --store or --overwrite"
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
    batch_size: int = ENCODE_BATCH,
    chunk_rows: int = CHUNK_ROWS,
    limit: int | None = None,
    overwrite: bool = False,
    device: str | None = None,
    reporter: Reporter = SILENT,
    model: LatentAutoencoder | None = None,
    condition_type: str = "label",
    condition_column: str | None = None,
) -> EncodeResult:
    """Encode `rows` with the autoencoder into the store, resuming an interrupted run.

    When `rows.conditions` is set (load_texts(condition_column=...)), each row's condition is
    stored too, as a label index or as condition token ids (`condition_type`, ldlm.conditions).
    """
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1")
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows {chunk_rows} must be at least 1")
    path = store_location(store_path)  # file:// -> local path; a URL's protocol checked
    group = ranks()  # under `accelerate launch`: this process's rank, else a single process
    if not group.is_main:
        reporter = SILENT
    if model is None:
        model = load_autoencoder(autoencoder, device=group.pick_device(device))
    spec = None
    if rows.conditions is not None:
        spec = ConditionSpec.build(rows.conditions, condition_column or "condition", condition_type)
    want = _identity(rows, model, str(autoencoder), limit, batch_size, chunk_rows, spec)
    n = len(rows.texts)

    if not group.is_main:  # the main process opens or creates the store, the others follow
        group.wait()
        return _encode_share(rows, model, LatentStore.open(path, require_complete=False, writable=True),
                             batch_size, spec, group, reporter)
    if overwrite and group.count == 1 and not is_url(path) and store_exists(path):
        return _encode_replacing(rows, model, path, want, batch_size, spec, group, reporter)
    store = None
    if not overwrite and is_store(path):
        store = LatentStore.open(path, require_complete=False, writable=True)
        _check_same(store, want, path)
        if store.complete:
            group.wait()
            return EncodeResult(store, n, 0, rows.skipped, int(store.attrs.get("truncated_rows", 0)))
        store.ensure_arrays()
    elif not overwrite and store_exists(path):
        raise InputError(
            f"--store {path!r} exists and is not an ldlm store; choose another path or pass "
            "--overwrite to replace a zarr store"
        )
    if store is None:
        store = LatentStore.create(path, rows=n, latent_shape=model.latent_shape,
                                   chunk_rows=chunk_rows, attributes=want)

    group.wait()
    return _encode_share(rows, model, store, batch_size, spec, group, reporter)


def _encode_replacing(rows: TextRows, model: LatentAutoencoder, path: str, want: dict, batch_size: int,
                      spec: ConditionSpec | None, group: Ranks, reporter: Reporter) -> EncodeResult:
    """--overwrite of an existing local store by one process: the new store is encoded in a
    hidden sibling (`.NAME.overwrite`, which a rerun with the same arguments resumes) and renamed
    onto the old one once complete; until then the old store stays whole. (Under a launch of
    several processes the old store is deleted first, as on object storage.)"""
    check_replaceable(path)
    staging = str(Path(path).parent / f".{Path(path).name}.overwrite")
    store = None
    if is_store(staging):
        store = LatentStore.open(staging, require_complete=False, writable=True)
        try:
            _check_same(store, want, staging)
        except InputError:  # the leftover of an overwrite with other arguments: start again
            store = None
        else:
            store.ensure_arrays()
    if store is None:
        store = LatentStore.create(staging, rows=len(rows.texts), latent_shape=model.latent_shape,
                                   chunk_rows=want["chunk_rows"], attributes=want)
    result = _encode_share(rows, model, store, batch_size, spec, group, reporter)
    replace_path(Path(staging), Path(path))
    return replace(result, store=LatentStore.open(path))


def _encode_share(rows: TextRows, model: LatentAutoencoder, store: LatentStore, batch_size: int,
                  spec: ConditionSpec | None, group: Ranks, reporter: Reporter) -> EncodeResult:
    """Encode this process's unfinished chunks; the main process then completes the store.

    Run alone, a process owns every chunk. Under a launch of P processes, process r owns the
    r-th of P contiguous runs of chunks: ranks never write the same chunk, a rerun redoes only
    the chunks not marked done (with any P), and the statistics are summed in chunk order once
    every process is done, so the store is the one a single process writes.
    """
    n, chunk_rows = len(rows.texts), store.chunk_rows
    if store.complete:  # a rank that arrives after the main process found the store finished
        return EncodeResult(store, n, 0, rows.skipped, int(store.attrs.get("truncated_rows", 0)))
    done = store.done_chunks()
    mine = np.array_split(np.arange(store.num_chunks), group.count)[group.index]
    pending = [int(c) for c in mine if not done[c]]
    share = sum(min(chunk_rows, n - int(c) * chunk_rows) for c in mine)
    reporter.start("encode" if group.count == 1 else f"encode (process 1 of {group.count})",
                   total=share, unit="rows")
    reporter.advance(share - sum(min(chunk_rows, n - c * chunk_rows) for c in pending))
    model.eval()
    encoded = 0
    sums: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # statistics of the chunks written now

    def prepare(chunk: int) -> PreparedChunk:
        start, stop = store.chunk_bounds(chunk)
        return prepare_chunk(model.encoder_tokenizer, rows.texts[start:stop],
                             model.config.max_length, batch_size)

    # One helper thread tokenises the next chunk and writes the previous one while the
    # encoder runs; its queue keeps that order, and at most one write is in flight.
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(prepare, pending[0]) if pending else None
        writing = None
        for i, chunk in enumerate(pending):
            prepared = upcoming.result()
            if i + 1 < len(pending):
                upcoming = pool.submit(prepare, pending[i + 1])
            latents = encode_prepared(model, prepared)
            sums[chunk] = store.chunk_sums(latents)
            if writing is not None:
                writing.result()  # re-raises a failed write here
            start, stop = store.chunk_bounds(chunk)
            conds = ctexts = None
            if spec is not None:
                ctexts = rows.conditions[start:stop]
                conds = spec.encode(ctexts, strict=False)
            writing = pool.submit(store.write_chunk, chunk, latents, rows.texts[start:stop],
                                  prepared.lengths, conds, ctexts)
            encoded += stop - start
            reporter.advance(stop - start)
        if writing is not None:
            writing.result()
    reporter.stop()
    group.wait()
    encoded = group.total(encoded)
    if group.is_main:
        truncated = int(np.count_nonzero(store.array("lengths")[:] > model.config.max_length))
        store.update_attributes({"truncated_rows": truncated})
        store.finalize(sums)  # the other processes' chunks are read back for the statistics
    group.wait()
    store = LatentStore.open(store.path)  # metadata as the main process left it
    return EncodeResult(store, n, encoded, rows.skipped, int(store.attrs.get("truncated_rows", 0)))
