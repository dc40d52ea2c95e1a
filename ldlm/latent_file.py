"""The latent file and pipe format: self-describing, streamable, checked on read.

    magic   b"LDLMLAT1"
    header  uint32 little-endian length, then UTF-8 JSON:
            {"format": "ldlm-latents", "version": 1, "latent_space": <fingerprint>,
             "autoencoder": <path or hub id that made the space, if known>,
             "latent_shape": [k, d], "dtype": "float32", ...provenance}
    frames  uint32 n_rows, uint32 meta_len, meta (UTF-8 JSON list of per-row dicts, or
            nothing), then n_rows * k * d float32 little-endian values
    end     a frame with n_rows = 0 and meta_len = 0

The end frame makes a stream cut short detectable; the header lets `decode` refuse latents
from another latent space and find the autoencoder on its own. The same bytes are a latent
file on disk (written atomically) and the stream `ldlm sample | ldlm decode` passes.
`open_latents` reads any latents a command takes: a latent file, the stream on stdin, or a
latent store (whose rows carry their source texts).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ldlm.errors import InputError

MAGIC = b"LDLMLAT1"
FORMAT = "ldlm-latents"
_U32 = struct.Struct("<I")


@dataclass
class LatentHeader:
    latent_space: str  # fingerprint of the autoencoder whose latents these are
    latent_shape: tuple[int, int]  # (k, d)
    autoencoder: str | None = None  # where that autoencoder was (path or hub id)
    extra: dict = field(default_factory=dict)  # provenance: run, sampler, seed...

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "version": 1, "latent_space": self.latent_space,
                "latent_shape": list(self.latent_shape), "dtype": "float32",
                "autoencoder": self.autoencoder, **self.extra}
        return json.dumps(body).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> LatentHeader:
        try:
            body = json.loads(raw.decode("utf-8"))
            k, d = body["latent_shape"]
            known = {"format", "version", "latent_space", "latent_shape", "dtype", "autoencoder"}
            return cls(latent_space=str(body["latent_space"]), latent_shape=(int(k), int(d)),
                       autoencoder=body.get("autoencoder"),
                       extra={key: v for key, v in body.items() if key not in known})
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{source} has a corrupt latent header ({exc}); regenerate it "
                             "with `ldlm sample`") from exc


class LatentWriter:
    """Writes a header, then frames of latents, then the end frame on `close()`."""

    def __init__(self, fh: BinaryIO, header: LatentHeader):
        self.fh, self.header, self.rows = fh, header, 0
        raw = header.to_json()
        fh.write(MAGIC + _U32.pack(len(raw)) + raw)

    def write(self, latents: np.ndarray, meta: list[dict] | None = None) -> None:
        # latents (n, k, d)
        x = np.ascontiguousarray(latents, dtype="<f4")
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.header.latent_shape):
            raise ValueError(f"latents of shape {x.shape} do not match "
                             f"(n, {self.header.latent_shape[0]}, {self.header.latent_shape[1]})")
        raw_meta = json.dumps(meta).encode("utf-8") if meta else b""
        self.fh.write(_U32.pack(x.shape[0]) + _U32.pack(len(raw_meta)) + raw_meta + x.tobytes())
        self.rows += x.shape[0]

    def close(self) -> None:
        self.fh.write(_U32.pack(0) + _U32.pack(0))
        self.fh.flush()


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        b = fh.read(left)
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_header(fh: BinaryIO, source: str) -> LatentHeader:
    magic = _read_exact(fh, len(MAGIC))
    if not magic:
        raise InputError(f"{source} is empty: no latents to read; pipe `ldlm sample RUN` into "
                         "decode or give a latent file or store")
    if magic != MAGIC:
        raise InputError(f"{source} is not an ldlm latent stream (bad magic bytes); give the "
                         "output of `ldlm sample` or a latent store")
    raw_len = _read_exact(fh, 4)
    if len(raw_len) < 4:
        raise InputError(f"{source} is cut short inside its header; regenerate it")
    (n,) = _U32.unpack(raw_len)
    if n > 1 << 24:
        raise InputError(f"{source} has a corrupt header length ({n}); regenerate it")
    raw = _read_exact(fh, n)
    if len(raw) < n:
        raise InputError(f"{source} is cut short inside its header; regenerate it")
    return LatentHeader.from_json(raw, source)


def read_frames(
    fh: BinaryIO, header: LatentHeader, source: str
) -> Iterator[tuple[np.ndarray, list[dict] | None]]:
    """Yield (latents (n, k, d) float32, per-row meta or None) until the end frame."""
    k, d = header.latent_shape
    rows = 0
    while True:
        head = _read_exact(fh, 8)
        if len(head) < 8:
            raise InputError(f"{source} is cut short after {rows} latents (no end marker); "
                             "the writer was interrupted: regenerate it")
        n, meta_len = _U32.unpack(head[:4])[0], _U32.unpack(head[4:])[0]
        if n == 0 and meta_len == 0:
            return
        raw_meta = _read_exact(fh, meta_len)
        body = _read_exact(fh, n * k * d * 4)
        if len(raw_meta) < meta_len or len(body) < n * k * d * 4:
            raise InputError(f"{source} is cut short after {rows} latents; regenerate it")
        x = np.frombuffer(body, dtype="<f4").reshape(n, k, d)
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=(1, 2)).argmax()) + rows
            raise InputError(f"{source} holds NaN or inf values (latent {bad}); the sampler "
                             "diverged: resample, e.g. with more --num-inference-steps")
        meta = None
        if meta_len:
            try:
                meta = json.loads(raw_meta.decode("utf-8"))
            except ValueError as exc:
                raise InputError(f"{source} has corrupt row metadata near latent {rows}") from exc
        rows += n
        yield x, meta


@dataclass
class LatentSource:
    """Latents to decode and what they say about themselves."""

    name: str  # for messages: a path or "stdin"
    latent_space: str | None
    latent_shape: tuple[int, int]
    autoencoder: str | None  # where the latents say their autoencoder is
    frames: Iterator[tuple[np.ndarray, list[dict] | None]]  # (latents (n, k, d), meta)
    rows: int | None = None  # when known in advance


def _store_frames(store, step: int = 1024):
    for start in range(0, store.rows, step):
        stop = min(start + step, store.rows)
        texts = store.read_texts(start, stop)
        yield store.read_latents(start, stop), [{"reference": t} for t in texts]


def open_latents(path: str | None, stdin: BinaryIO | None = None) -> LatentSource:
    """Open LATENTS: a store, a latent file, or '-' / None for the stream on stdin."""
    from ldlm.store import LatentStore, is_store, is_url, store_location

    if path in (None, "-"):
        fh = stdin if stdin is not None else sys.stdin.buffer
        name = "stdin"
    else:
        path = store_location(path)  # file:// -> a local path
        if is_url(path) or is_store(path):  # at a URL only a store can be read
            store = LatentStore.open(path)
            return LatentSource(path, store.latent_space, store.latent_shape,
                                store.attrs.get("autoencoder"), _store_frames(store), store.rows)
        p = Path(path)
        if not p.exists():
            raise InputError(f"LATENTS {path!r} does not exist; give a latent file, a store, or "
                             "'-' for stdin")
        if p.is_dir():
            raise InputError(f"LATENTS {path!r} is a folder but not an ldlm latent store; give "
                             "a store written by `ldlm encode` or a latent file")
        try:
            fh = open(p, "rb")  # noqa: SIM115 - read lazily by the frame iterator
        except OSError as exc:
            raise InputError(f"cannot read LATENTS {path!r}: {exc.strerror}") from exc
        name = repr(path)
    header: LatentHeader = read_header(fh, name)
    return LatentSource(name, header.latent_space, header.latent_shape, header.autoencoder,
                        read_frames(fh, header, name))


def write_latent_file(path, header: LatentHeader, latents: np.ndarray,
                      meta: list[dict] | None = None) -> None:
    """Write latents (n, k, d) to a latent file atomically (all of it or nothing)."""
    from ldlm.atomic import atomic_file

    with atomic_file(path) as fh:
        writer = LatentWriter(fh, header)
        writer.write(latents, meta)
        writer.close()
