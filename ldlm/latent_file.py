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
from another latent space and find the autoencoder on its own. Streams may be concatenated
(`cat a.ldlm b.ldlm | ldlm decode`): after an end frame another stream of the same latent
space and shape may follow, and its rows are read on; anything else after it is refused.
The reader checks every field, so damaged or hostile input is a one-line InputError. The
same bytes are a latent file on disk (written atomically) and the stream `ldlm sample |
ldlm decode` passes.
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

from ldlm.errors import InputError, first_line

MAGIC = b"LDLMLAT1"
FORMAT = "ldlm-latents"
VERSIONS = (1,)  # the format versions this reader reads
_U32 = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 24  # a header is a few hundred bytes
_MAX_ROW_VALUES = 1 << 24  # k * d of one latent (64 MiB of float32)
_MAX_FRAME_BYTES = 1 << 30  # latents or metadata in one frame; the writer splits larger batches
_READ_CHUNK = 1 << 24  # reads go in pieces: a lying length allocates no more than is there


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
        """The header in `raw`, every field checked (InputError naming the bad one)."""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise InputError(f"{source} has a corrupt latent header (not JSON: {first_line(exc)}); "
                             "regenerate it with `ldlm sample`") from exc
        if not isinstance(body, dict):
            raise InputError(f"{source} has a corrupt latent header ({_shown(body)}, not a JSON "
                             "object); regenerate it with `ldlm sample`")
        _check_header_fields(body, source)
        known = {"format", "version", "latent_space", "latent_shape", "dtype", "autoencoder"}
        return cls(latent_space=body["latent_space"], latent_shape=tuple(body["latent_shape"]),
                   autoencoder=body.get("autoencoder"),
                   extra={key: v for key, v in body.items() if key not in known})


def _shown(value, limit: int = 60) -> str:
    """A value for a one-line message: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_header_fields(body: dict, source: str) -> None:
    fix = "regenerate it with `ldlm sample`"
    if body.get("format") != FORMAT:
        raise InputError(f"{source} has latent header format {_shown(body.get('format'))}, not "
                         f"{FORMAT!r}; {fix}")
    version = body.get("version")
    if not _is_int(version) or version not in VERSIONS:
        raise InputError(f"{source} has latent format version {_shown(version)}, but this ldlm "
                         f"reads version {', '.join(map(str, VERSIONS))}; upgrade ldlm or {fix}")
    if body.get("dtype") != "float32":
        raise InputError(f"{source} declares latent dtype {_shown(body.get('dtype'))}, but latent "
                         f"files hold 'float32'; {fix}")
    shape = body.get("latent_shape")
    if (not isinstance(shape, list) or len(shape) != 2 or not all(_is_int(n) and n > 0 for n in shape)
            or shape[0] * shape[1] > _MAX_ROW_VALUES):
        raise InputError(f"{source} has latent_shape {_shown(shape)}, not two positive integers "
                         f"[k, d] with k * d at most {_MAX_ROW_VALUES}; {fix}")
    if not isinstance(body.get("latent_space"), str):
        raise InputError(f"{source} has latent_space {_shown(body.get('latent_space'))}, not a "
                         f"fingerprint string; {fix}")
    if not isinstance(body.get("autoencoder"), str | None):
        raise InputError(f"{source} has autoencoder {_shown(body.get('autoencoder'))}, not a path "
                         f"or hub id (a string) or null; {fix}")


class LatentWriter:
    """Writes a header, then frames of latents, then the end frame on `close()`."""

    def __init__(self, fh: BinaryIO, header: LatentHeader):
        self.fh, self.header, self.rows = fh, header, 0
        raw = header.to_json()
        fh.write(MAGIC + _U32.pack(len(raw)) + raw)

    def write(self, latents: np.ndarray, meta: list[dict] | None = None) -> None:
        # latents (n, k, d); meta: one dict per row, or None
        x = np.ascontiguousarray(latents, dtype="<f4")
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.header.latent_shape):
            raise ValueError(f"latents of shape {x.shape} do not match "
                             f"(n, {self.header.latent_shape[0]}, {self.header.latent_shape[1]})")
        if meta and len(meta) != len(x):
            raise ValueError(f"{len(meta)} metadata entries for {len(x)} latents; give one per row")
        step = max(1, _MAX_FRAME_BYTES // (x[0].nbytes or 1)) if len(x) else 1
        for start in range(0, len(x), step):  # no frame for no rows: it would read as the end
            self._write_frame(x[start:start + step], meta[start:start + step] if meta else None)

    def _write_frame(self, x: np.ndarray, meta: list[dict] | None) -> None:
        raw_meta = json.dumps(meta).encode("utf-8") if meta else b""
        if len(raw_meta) > _MAX_FRAME_BYTES and len(x) > 1:  # halve until the reader takes it
            half = len(x) // 2
            self._write_frame(x[:half], meta[:half])
            self._write_frame(x[half:], meta[half:])
            return
        if len(raw_meta) > _MAX_FRAME_BYTES:
            raise ValueError(f"the metadata of one latent is {len(raw_meta)} bytes, more than "
                             f"{_MAX_FRAME_BYTES}; keep per-row metadata small")
        self.fh.write(_U32.pack(x.shape[0]) + _U32.pack(len(raw_meta)) + raw_meta + x.tobytes())
        self.rows += x.shape[0]

    def close(self) -> None:
        self.fh.write(_U32.pack(0) + _U32.pack(0))
        self.fh.flush()


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    """Up to n bytes (fewer only at the end of the input), read in bounded pieces."""
    chunks, left = [], n
    while left:
        b = fh.read(min(left, _READ_CHUNK))
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
    return _read_header_body(fh, source)


def _read_header_body(fh: BinaryIO, source: str) -> LatentHeader:
    """The header after the magic bytes: its length, then its JSON."""
    raw_len = _read_exact(fh, 4)
    if len(raw_len) < 4:
        raise InputError(f"{source} is cut short inside its header; regenerate it")
    (n,) = _U32.unpack(raw_len)
    if n > _MAX_HEADER_BYTES:
        raise InputError(f"{source} has a corrupt header length ({n}); regenerate it")
    raw = _read_exact(fh, n)
    if len(raw) < n:
        raise InputError(f"{source} is cut short inside its header; regenerate it")
    return LatentHeader.from_json(raw, source)


def read_frames(
    fh: BinaryIO, header: LatentHeader, source: str
) -> Iterator[tuple[np.ndarray, list[dict] | None]]:
    """Yield (latents (n, k, d) float32, per-row meta or None) until the end frame, then on
    through any stream of the same latent space and shape concatenated after it."""
    rows = 0
    while True:
        for x, meta in _stream_frames(fh, header, source, rows):
            rows += len(x)
            yield x, meta
        if not _next_stream(fh, header, source, rows):
            return


def _stream_frames(fh: BinaryIO, header: LatentHeader, source: str, rows: int):
    """The frames of one stream up to its end frame; `rows`: latents read before it."""
    k, d = header.latent_shape
    while True:
        head = _read_exact(fh, 8)
        if len(head) < 8:
            raise InputError(f"{source} is cut short after {rows} latents (no end marker); "
                             "the writer was interrupted: regenerate it")
        n, meta_len = _U32.unpack(head[:4])[0], _U32.unpack(head[4:])[0]
        if n == 0 and meta_len == 0:
            return
        size = n * k * d * 4
        if size > _MAX_FRAME_BYTES or meta_len > _MAX_FRAME_BYTES:
            raise InputError(f"{source} has a corrupt frame after latent {rows}: {n} latents with "
                             f"{meta_len} bytes of metadata, more than the {_MAX_FRAME_BYTES} "
                             "bytes a frame holds; regenerate it")
        raw_meta = _read_exact(fh, meta_len)
        body = _read_exact(fh, size)
        if len(raw_meta) < meta_len or len(body) < size:
            raise InputError(f"{source} is cut short after {rows} latents; regenerate it")
        x = np.frombuffer(body, dtype="<f4").reshape(n, k, d)  # (n, k, d)
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=(1, 2)).argmax()) + rows
            raise InputError(f"{source} holds NaN or inf values (latent {bad}); the sampler "
                             "diverged: resample, e.g. with more --num-inference-steps")
        meta = _parse_meta(raw_meta, n, source, rows) if meta_len else None
        rows += n
        if n:  # a frame of no rows (metadata []) carries nothing
            yield x, meta


def _parse_meta(raw: bytes, n: int, source: str, rows: int) -> list[dict]:
    """A frame's metadata: a JSON list of one object per latent."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{source} has corrupt row metadata near latent {rows} (not JSON); "
                         "regenerate it") from exc
    if not isinstance(meta, list) or len(meta) != n or not all(isinstance(m, dict) for m in meta):
        got = f"a list of {len(meta)}" if isinstance(meta, list) else type(meta).__name__
        raise InputError(f"{source} has corrupt row metadata near latent {rows}: {got}, not a "
                         f"list of {n} objects (one per latent); regenerate it")
    return meta


def _next_stream(fh: BinaryIO, header: LatentHeader, source: str, rows: int) -> bool:
    """After an end frame: False at the end of the input, True when another stream of the
    same latent space and shape follows (its header read); InputError for anything else."""
    magic = _read_exact(fh, len(MAGIC))
    if not magic:
        return False
    if magic != MAGIC:
        raise InputError(f"{source} has trailing bytes after its end marker (after latent "
                         f"{rows}) that are not an ldlm latent stream; strip them or regenerate it")
    nxt = _read_header_body(fh, source)
    if (nxt.latent_space, nxt.latent_shape) != (header.latent_space, header.latent_shape):
        raise InputError(f"{source} concatenates latents of another latent space or shape after "
                         f"latent {rows}: {nxt.latent_space!r} {list(nxt.latent_shape)} after "
                         f"{header.latent_space!r} {list(header.latent_shape)}; decode each "
                         "stream on its own")
    return True


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
            from ldlm.files import missing

            raise InputError(f"LATENTS {path!r} {missing(p)}; give a latent file, a store, or "
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
    rows = header.extra.get("rows")  # written by `ldlm sample`: what a progress bar can count to
    return LatentSource(name, header.latent_space, header.latent_shape, header.autoencoder,
                        read_frames(fh, header, name),
                        rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else None)


def write_latent_file(path, header: LatentHeader, latents: np.ndarray,
                      meta: list[dict] | None = None) -> None:
    """Write latents (n, k, d) to a latent file atomically (all of it or nothing)."""
    from ldlm.atomic import atomic_file

    with atomic_file(path) as fh:
        writer = LatentWriter(fh, header)
        writer.write(latents, meta)
        writer.close()
