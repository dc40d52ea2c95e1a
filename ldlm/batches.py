"""Training batches from a latent store: the one reader of its rows for every trainer.

Two orders and two readers, one batch type (`Batch`: latents, conditions, texts):
    in memory (`DataOrder` + `InMemoryRows`): a store that fits in the training memory limit
        is read once; epoch e is a permutation of its rows seeded by (seed, e);
    streamed (`ChunkWindowOrder` + `ChunkStream`): whole row chunks in shuffled windows, a
        bounded number of them in memory, for a store of any size.
`ldlm train` picks one by the store's size; `ldlm adapt-decoder` streams (it also needs the
texts). Both readers go through `read_rows`.

Streaming a store larger than memory, in detail:

Order (`ChunkWindowOrder`): epoch e permutes the row chunks that hold training rows (seeded by
(seed, e)); data-parallel rank r of P takes chunks perm[r::P], so ranks read disjoint chunks.
A rank's chunks are grouped into windows of W consecutive (permuted) chunks, the rows of each
window are shuffled (seeded by (seed, e, P, r, window)), and the rank's micro-batches are
consecutive slices of that stream. Micro-batch m of rank r depends on (seed, e, P, r, m) only,
so a resumed run, which knows only m, continues the same order; a resume with another P
continues with the new P's order.

Every rank takes the same number of micro-batches per epoch (`per_epoch`, else DDP waits
forever): the largest count that the rank with the fewest rows can fill in any epoch. Each
epoch, each rank serves the first per_epoch * B rows of its stream and skips the rest: with
one process that is the last rows % B rows of the stream (as the in-memory order drops the last
partial batch); with P processes a rank skips fewer than B + one chunk + the rows the short
last chunk lacks (a rank may hold one chunk more than another). Which rows are skipped changes
every epoch with the chunk permutation. Only when a rank has fewer than B rows
(a store of fewer chunks than processes, or one short chunk) does its stream wrap around and
serve rows twice in an epoch.

Shuffle quality: a batch mixes rows from the W chunks of one window (two at a window edge),
not from the whole store; rows of one chunk were encoded together, so when the dataset's row
order carries structure (sorted by label, length or source) a small W gives batches less
varied than a global shuffle would, and a large W costs memory (below). The chunk permutation
changes every epoch, so which chunks share a window changes too.

Reader (`ChunkStream`): reads whole chunks (sequential zarr reads, no per-row selection) on a
background thread, one window ahead of the batches, and keeps only the windows the current
batch needs plus the one being prefetched: at most 3 windows, i.e. 3 * W * chunk bytes,
whatever the size of the store. `window_chunks` lowers W so that 3 windows fit in the
training memory limit, but never below one batch.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

WINDOWS_RESIDENT = 3  # windows a ChunkStream holds at most: the 1-2 a batch needs, 1 prefetched


class Batch(NamedTuple):
    """One micro-batch of store rows."""

    latents: np.ndarray  # (B, k, d) float32
    conditions: np.ndarray | None  # (B,) label ids or (B, L) condition token ids; None if not asked
    texts: list[str] | None  # the rows' source texts; None if not asked


def read_rows(store, start: int, stop: int, conditions: bool = False, texts: bool = False) -> Batch:
    """Rows [start, stop) of a store, in order (whole chunks when the bounds are chunk bounds)."""
    return Batch(np.asarray(store.read_latents(start, stop), np.float32),
                 store.read_conditions(start, stop) if conditions else None,
                 store.read_texts(start, stop) if texts else None)


def _pick(batch: Batch, idx: np.ndarray) -> Batch:
    return Batch(batch.latents[idx], None if batch.conditions is None else batch.conditions[idx],
                 None if batch.texts is None else [batch.texts[i] for i in idx])


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Batch(np.concatenate([p.latents for p in parts]),
                 None if first.conditions is None else np.concatenate([p.conditions for p in parts]),
                 None if first.texts is None else [t for p in parts for t in p.texts])


def fits_in_memory(store, n: int, memory_limit_mb: int) -> bool:
    """True when rows [0, n) of the store's latents fit in `memory_limit_mb`."""
    k, d = store.latent_shape
    return n * k * d * 4 <= memory_limit_mb * 2**20


# ----- in memory -------------------------------------------------------------------------
@dataclass
class DataOrder:
    """Which rows each micro-batch takes: epoch e is a permutation seeded by (seed, e)."""

    rows: int  # training rows
    batch_size: int  # per process
    processes: int  # data-parallel processes
    seed: int

    @property
    def per_epoch(self) -> int:
        """Micro-batches per epoch (the last partial batch is dropped, unless it is the only one)."""
        return max(1, self.rows // (self.batch_size * self.processes))

    def permutation(self, epoch: int) -> np.ndarray:
        """The row order of `epoch` (computed once per epoch, not per batch)."""
        cached = self.__dict__.get("_cached")
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.rows))
            self.__dict__["_cached"] = cached
        return cached[1]

    def batch(self, micro: int, rank: int) -> np.ndarray:
        epoch, pos = divmod(micro, self.per_epoch)
        order = self.permutation(epoch)
        size = self.batch_size * self.processes
        return order[pos * size : (pos + 1) * size][rank :: self.processes]


class InMemoryRows:
    """Rows [0, n) of a store, read once (ldlm train, when they fit in its memory limit)."""

    def __init__(self, store, n: int, conditions: bool = False, texts: bool = False):
        self.rows = read_rows(store, 0, n, conditions, texts)

    def batch(self, order: DataOrder, micro: int, rank: int) -> Batch:
        """Micro-batch `micro` of `rank`, its rows in store order."""
        return _pick(self.rows, np.sort(order.batch(micro, rank)))

    def close(self) -> None:
        """Nothing to release (the streaming reader's counterpart)."""


# ----- streamed --------------------------------------------------------------------------


@dataclass
class _Layout:
    """One rank's stream in one epoch."""

    windows: list[np.ndarray]  # chunk ids of each window, in stream order
    cum: np.ndarray  # (windows + 1,) stream position where each window starts, then the length


@dataclass
class ChunkWindowOrder:
    """Which rows each micro-batch takes when the store is streamed chunk by chunk (see the
    module docstring); the streaming counterpart of `DataOrder`."""

    rows: int  # training rows: rows [0, rows) of the store (held-out rows come after)
    chunk_rows: int  # the store's rows per chunk
    batch_size: int  # per process
    processes: int  # data-parallel processes
    seed: int
    window: int  # chunks per shuffle window (raised so that a window holds a whole batch)
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)
    _shuffles: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.window = max(self.window, math.ceil(self.batch_size / self.chunk_rows), 1)

    @property
    def num_chunks(self) -> int:
        """Chunks holding training rows (the last may be short)."""
        return -(-self.rows // self.chunk_rows)

    def chunk_length(self, chunk: int) -> int:
        return min(self.chunk_rows, self.rows - chunk * self.chunk_rows)

    @property
    def per_epoch(self) -> int:
        """Micro-batches per epoch, the same for every rank and every epoch: what the rank with
        the fewest rows fills in the worst epoch (floor(C / P) chunks, one of them the short
        one), at least 1."""
        short = self.chunk_rows - self.chunk_length(self.num_chunks - 1)
        least = self.num_chunks // self.processes * self.chunk_rows - short
        return max(1, least // self.batch_size)

    def chunks(self, epoch: int, rank: int) -> np.ndarray:
        """The chunks rank `rank` streams in `epoch`, in order."""
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_chunks)
        mine = perm[rank :: self.processes]
        return mine if len(mine) else perm[rank % self.num_chunks : rank % self.num_chunks + 1]

    def layout(self, epoch: int, rank: int) -> _Layout:
        key = (epoch, rank)
        if key not in self._layouts:
            mine = self.chunks(epoch, rank)
            windows = [mine[i : i + self.window] for i in range(0, len(mine), self.window)]
            sizes = [sum(self.chunk_length(int(c)) for c in w) for w in windows]
            if len(self._layouts) >= 4:  # the epoch under way and the next one, per rank
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[key] = _Layout(windows, np.concatenate([[0], np.cumsum(sizes)]))
        return self._layouts[key]

    def shuffle(self, epoch: int, rank: int, w: int) -> np.ndarray:
        """Window w's row order: positions into the window's rows (its chunks' rows in order)."""
        key = (epoch, rank, w)
        if key not in self._shuffles:
            lay = self.layout(epoch, rank)
            size = int(lay.cum[w + 1] - lay.cum[w])
            if len(self._shuffles) >= 8:
                self._shuffles.pop(next(iter(self._shuffles)))
            rng = np.random.default_rng([self.seed, epoch, self.processes, rank, w])
            self._shuffles[key] = rng.permutation(size)
        return self._shuffles[key]

    def window_rows(self, epoch: int, rank: int, w: int) -> np.ndarray:
        """Store row ids of window w's rows, in file order (what the reader loads)."""
        return np.concatenate([np.arange(c * self.chunk_rows, c * self.chunk_rows + self.chunk_length(c))
                               for c in map(int, self.layout(epoch, rank).windows[w])])

    def spans(self, micro: int, rank: int) -> list[tuple[int, int, int, int]]:
        """Micro-batch `micro` of `rank` as (epoch, window, lo, hi): rows shuffle[lo:hi] of
        each window, in order (two windows at a window edge; more only when a stream wraps)."""
        epoch, pos = divmod(micro, self.per_epoch)
        lay = self.layout(epoch, rank)
        length = int(lay.cum[-1])
        q, end, out = pos * self.batch_size, (pos + 1) * self.batch_size, []
        while q < end:
            s = q % length
            w = int(np.searchsorted(lay.cum, s, side="right")) - 1
            take = min(end - q, int(lay.cum[w + 1]) - s)
            lo = s - int(lay.cum[w])
            out.append((epoch, w, lo, lo + take))
            q += take
        return out

    def batch(self, micro: int, rank: int) -> np.ndarray:
        """Store row ids of micro-batch `micro` of `rank` (B,)."""
        return np.concatenate([self.window_rows(e, rank, w)[self.shuffle(e, rank, w)[lo:hi]]
                               for e, w, lo, hi in self.spans(micro, rank)])

    def next_window(self, micro: int, rank: int, have: set) -> tuple[int, int] | None:
        """The first window after micro-batch `micro` that is not in `have` (to prefetch)."""
        epoch, pos = divmod(micro, self.per_epoch)
        q, limit = (pos + 1) * self.batch_size, self.per_epoch * self.batch_size
        for _ in range(len(self.layout(epoch, rank).windows) + 3):
            if q >= limit:
                epoch, q = epoch + 1, 0
            lay = self.layout(epoch, rank)
            s = q % int(lay.cum[-1])
            w = int(np.searchsorted(lay.cum, s, side="right")) - 1
            if (epoch, w) not in have:
                return epoch, w
            q += int(lay.cum[w + 1]) - s
        return None


class ChunkStream:
    """Serves one rank's micro-batches of a `ChunkWindowOrder` from whole chunks read on a
    background thread; holds at most `WINDOWS_RESIDENT` windows (see the module docstring)."""

    def __init__(self, store, order: ChunkWindowOrder, rank: int, conditional: bool = False,
                 texts: bool = False):
        self.store, self.order, self.rank = store, order, rank
        self.conditional, self.texts = conditional, texts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ldlm-chunks")
        self._windows: dict[tuple[int, int], Future] = {}
        self._sizes: dict[tuple[int, int], int] = {}  # chunks in each window held
        self.max_resident_chunks = 0  # the most chunks ever held at once (tests check the bound)

    @property
    def resident_chunks(self) -> int:
        """Chunks held now, decoded or being read."""
        return sum(self._sizes.values())

    def _load(self, chunks: np.ndarray) -> Batch:
        """The rows of `chunks`, in that order."""
        parts = []
        for c in map(int, chunks):
            start = c * self.order.chunk_rows
            parts.append(read_rows(self.store, start, start + self.order.chunk_length(c),
                                   self.conditional, self.texts))  # one whole chunk
        return _concat(parts)

    def _request(self, key: tuple[int, int]) -> Future:
        if key not in self._windows:
            chunks = self.order.layout(key[0], self.rank).windows[key[1]]
            self._windows[key] = self._pool.submit(self._load, chunks)
            self._sizes[key] = len(chunks)
            self.max_resident_chunks = max(self.max_resident_chunks, self.resident_chunks)
        return self._windows[key]

    def batch(self, order: ChunkWindowOrder, micro: int, rank: int) -> Batch:
        """Micro-batch `micro` of `rank`."""
        if order is not self.order or rank != self.rank:
            raise ValueError("a ChunkStream serves only the order and rank it was built for")
        spans = order.spans(micro, rank)
        needed = {(e, w) for e, w, _, _ in spans}
        ahead = order.next_window(micro, rank, needed)  # the window after this batch's
        for key in list(self._windows):  # drop all else (windows done with, stale reads)
            if key not in needed and key != ahead:
                self._windows.pop(key).cancel()
                del self._sizes[key]
        parts = [_pick(self._request((e, w)).result(), order.shuffle(e, rank, w)[lo:hi])
                 for e, w, lo, hi in spans]
        if ahead is not None:
            self._request(ahead)  # read on the background thread while this batch trains
        return _concat(parts)

    def close(self) -> None:
        self._windows.clear()
        self._sizes.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def megabytes(n_bytes: float) -> str:
    """'2928 MB', '0.05 MB'."""
    mb = n_bytes / 2**20
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2g} MB"


def window_chunks(requested: int, chunk_bytes: int, batch_size: int, chunk_rows: int,
                  memory_limit_mb: int) -> int:
    """Chunks per window: `requested`, lowered so that `WINDOWS_RESIDENT` windows fit in the
    memory limit, but never below one batch."""
    fit = memory_limit_mb * 2**20 // (WINDOWS_RESIDENT * max(1, chunk_bytes))
    return max(1, math.ceil(batch_size / chunk_rows), min(requested, fit))


__all__ = ["Batch", "ChunkStream", "ChunkWindowOrder", "DataOrder", "InMemoryRows", "WINDOWS_RESIDENT",
           "fits_in_memory", "megabytes", "read_rows", "window_chunks"]
