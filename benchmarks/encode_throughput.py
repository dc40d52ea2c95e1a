"""Encode throughput: `encode_dataset` (tokenise, length-sorted batches, zarr writes, stats)
as a ratio to the bare encoder forward pass on the same batches, in the same run; and the
gain of length-sorted batches over batches in input order.

    python benchmarks/encode_throughput.py AE_DIR [--data ../shared/data/e2e/trainset.csv]
        [--column ref] [--rows 8192] [--batch-size 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ldlm.autoencoder import load_autoencoder
from ldlm.autoencoder.batching import encode_chunk, prepare_chunk
from ldlm.data import load_texts
from ldlm.encode import encode_dataset


def bare_forward(model, texts: list[str], batch_size: int, chunk_rows: int) -> float:
    """Seconds for model.encode alone over the very batches `ldlm encode` builds (tokenised
    and padded beforehand, length-sorted within each store chunk)."""
    prepared = [prepare_chunk(model.encoder_tokenizer, texts[i : i + chunk_rows],
                              model.config.max_length, batch_size)
                for i in range(0, len(texts), chunk_rows)]
    start = time.perf_counter()
    with torch.no_grad():
        for chunk in prepared:
            for _, ids, mask in chunk.batches:
                model.encode(ids, mask)
    return time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the CLI runs it
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("autoencoder")
    e2e = Path(__file__).resolve().parents[2] / "shared/data/e2e/trainset.csv"
    p.add_argument("--data", default=str(e2e))
    p.add_argument("--column", default="ref")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--chunk-rows", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    model = load_autoencoder(a.autoencoder)
    rows = load_texts(a.data, text_column=a.column, limit=a.rows)
    texts = rows.texts
    n = len(texts)
    bare, full, plain, sort = [], [], [], []
    for _ in range(a.repeats):
        bare.append(bare_forward(model, texts, a.batch_size, a.chunk_rows))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            encode_dataset(rows, a.autoencoder, Path(tmp) / "s.zarr", batch_size=a.batch_size,
                           chunk_rows=a.chunk_rows, model=model)
            full.append(time.perf_counter() - start)
        start = time.perf_counter()
        encode_chunk(model, texts, a.batch_size, sort_by_length=False)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        encode_chunk(model, texts, a.batch_size, sort_by_length=True)
        sort.append(time.perf_counter() - start)
    b, f, u, s = (min(x) for x in (bare, full, plain, sort))
    print(f"rows {n}, batch {a.batch_size}, torch threads {torch.get_num_threads()}, "
          f"best of {a.repeats}")
    print(f"bare encoder forward, same batches  : {n / b:9.1f} rows/s")
    print(f"ldlm encode to a zarr store          : {n / f:9.1f} rows/s  "
          f"ratio to bare {b / f:.3f}")
    print(f"encode_chunk, batches in input order : {n / u:9.1f} rows/s")
    print(f"encode_chunk, length-sorted batches  : {n / s:9.1f} rows/s  "
          f"gain {u / s:.2f}x")


if __name__ == "__main__":
    main()
