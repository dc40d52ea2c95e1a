"""Encode throughput: `encode_dataset` (tokenise, length-sorted batches, zarr writes, stats)
as a ratio to the bare encoder forward pass on the same batches, in the same run; and the
gain of length-sorted batches over batches in input order.

    python benchmarks/encode_throughput.py AE_DIR [--data ../shared/data/e2e/trainset.csv]
        [--column ref] [--rows 8192] [--batch-size 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ldlm.autoencoder import load_autoencoder
from ldlm.data import load_texts
from ldlm.encode import encode_chunk, encode_dataset


def bare_forward(model, texts: list[str], batch_size: int) -> float:
    """Seconds for model.encode over pre-tokenised, pre-padded, length-sorted batches."""
    tok = model.encoder_tokenizer
    ids = tok(texts, truncation=True, max_length=model.config.max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    batches = []
    for i in range(0, len(texts), batch_size):
        rows = [ids[j] for j in order[i : i + batch_size]]
        width = max(len(r) for r in rows)
        b = torch.full((len(rows), width), tok.pad_token_id or 0, dtype=torch.long)
        m = torch.zeros_like(b)
        for r, row in enumerate(rows):
            b[r, : len(row)] = torch.tensor(row)
            m[r, : len(row)] = 1
        batches.append((b, m))
    start = time.perf_counter()
    with torch.no_grad():
        for b, m in batches:
            model.encode(b, m)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("autoencoder")
    e2e = Path(__file__).resolve().parents[2] / "shared/data/e2e/trainset.csv"
    p.add_argument("--data", default=str(e2e))
    p.add_argument("--column", default="ref")
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    model = load_autoencoder(a.autoencoder)
    rows = load_texts(a.data, text_column=a.column, limit=a.rows)
    texts = rows.texts
    n = len(texts)
    bare, full, plain, sort = [], [], [], []
    for _ in range(a.repeats):
        bare.append(bare_forward(model, texts, a.batch_size))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            encode_dataset(rows, a.autoencoder, Path(tmp) / "s.zarr", batch_size=a.batch_size,
                           model=model)
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
    print(f"bare encoder forward (sorted batches): {n / b:9.1f} rows/s")
    print(f"ldlm encode to a zarr store          : {n / f:9.1f} rows/s  "
          f"ratio to bare {b / f:.3f}")
    print(f"encode_chunk, batches in input order : {n / u:9.1f} rows/s")
    print(f"encode_chunk, length-sorted batches  : {n / s:9.1f} rows/s  "
          f"gain {u / s:.2f}x")


if __name__ == "__main__":
    main()
