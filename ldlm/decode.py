"""Stage: latents (a store, a latent file or a stream on stdin) -> texts.

The latents name their latent space; decode refuses latents from another autoencoder and,
when no autoencoder is given, loads the one the latents name if it exists here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ldlm.autoencoder import LatentAutoencoder, load_autoencoder
from ldlm.errors import InputError
from ldlm.progress import SILENT, Reporter
from ldlm.store import LatentStore, is_store, is_url, store_location
from ldlm.stream import StreamHeader, read_frames, read_header


@dataclass
class LatentSource:
    """Latents to decode and what they say about themselves."""

    name: str  # for messages: a path or "stdin"
    latent_space: str | None
    latent_shape: tuple[int, int]
    autoencoder: str | None  # where the latents say their autoencoder is
    frames: Iterator[tuple[np.ndarray, list[dict] | None]]  # (latents (n, k, d), meta)
    rows: int | None = None  # when known in advance


def _store_frames(store: LatentStore, step: int = 1024):
    for start in range(0, store.rows, step):
        stop = min(start + step, store.rows)
        texts = store.read_texts(start, stop)
        yield store.read_latents(start, stop), [{"reference": t} for t in texts]


def open_latents(path: str | None, stdin: BinaryIO | None = None) -> LatentSource:
    """Open LATENTS: a store, a latent file, or '-' / None for the stream on stdin."""
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
    header: StreamHeader = read_header(fh, name)
    return LatentSource(name, header.latent_space, header.latent_shape, header.autoencoder,
                        read_frames(fh, header, name))


def resolve_autoencoder(source: LatentSource, autoencoder: str | None,
                        device: str | None = None) -> LatentAutoencoder:
    """Load the autoencoder for `source`, checking that the latent spaces agree."""
    if autoencoder is None:
        named = source.autoencoder
        if not named or not Path(named).exists():
            raise InputError(
                f"the latents in {source.name} name autoencoder {named!r}, which is not on this "
                "machine; pass --autoencoder AE_DIR"
            )
        autoencoder = named
    model = load_autoencoder(autoencoder, device=device)
    if source.latent_space and source.latent_space != model.fingerprint:
        raise InputError(
            f"the latents in {source.name} live in latent space {source.latent_space}, but "
            f"--autoencoder {autoencoder!r} defines {model.fingerprint}; pass the autoencoder "
            "that made them"
        )
    if tuple(source.latent_shape) != tuple(model.latent_shape):
        raise InputError(
            f"the latents in {source.name} have shape {tuple(source.latent_shape)} but the "
            f"autoencoder expects {tuple(model.latent_shape)}; pass the autoencoder that made them"
        )
    return model


@dataclass
class DecodeArgs:
    max_new_tokens: int = 100  # tokens generated per latent
    temperature: float = 0.7  # sampling temperature; 0 means greedy
    top_p: float | None = None  # nucleus sampling mass
    num_beams: int = 1  # > 1: beam search (deterministic, temperature ignored)
    seed: int = 42
    batch_size: int = 64  # latents decoded together

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"--max-new-tokens {self.max_new_tokens} must be at least 1")
        if self.temperature < 0:
            raise InputError(f"--temperature {self.temperature} must be >= 0 (0 means greedy)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"--top-p {self.top_p} must be in (0, 1]")
        if self.num_beams < 1:
            raise InputError(f"--num-beams {self.num_beams} must be at least 1")
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size} must be at least 1")


def _rebatch(frames, size: int):
    buf: list[np.ndarray] = []
    meta: list[dict | None] = []
    for x, m in frames:
        for i in range(x.shape[0]):
            buf.append(x[i])
            meta.append(m[i] if m else None)
            if len(buf) == size:
                yield np.stack(buf), meta
                buf, meta = [], []
    if buf:
        yield np.stack(buf), meta


def decode_latents(
    source: LatentSource,
    model: LatentAutoencoder,
    args: DecodeArgs | None = None,
    reporter: Reporter = SILENT,
) -> Iterator[dict]:
    """Yield one record per latent, in order: {"index", "text", ...row metadata}."""
    args = args or DecodeArgs()
    args.check()
    torch.manual_seed(args.seed)
    temperature = 0.0 if args.num_beams > 1 else args.temperature
    reporter.start("decode", total=source.rows, unit="texts")
    index = 0
    for latents, meta in _rebatch(source.frames, args.batch_size):
        texts = model.generate(
            torch.from_numpy(latents), max_new_tokens=args.max_new_tokens,
            num_beams=args.num_beams, temperature=temperature, top_p=args.top_p,
        )
        for text, m in zip(texts, meta, strict=True):
            yield {"index": index, "text": text, **(m or {})}
            index += 1
        reporter.advance(len(texts))
    reporter.stop()
