"""Reconstruction of a text set by an autoencoder: greedy decode(encode(x)) against x.

    python benchmarks/reconstruction.py AE_DIR [--data ../shared/data/e2e/devset.csv]
        [--column ref] [--limit N] [--batch-size 128] [--device cpu]

Prints rows, exact-match rate, sacrebleu corpus BLEU and the wall time; one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ldlm.autoencoder import load_autoencoder
from ldlm.autoencoder.train import reconstruct
from ldlm.data import load_texts
from ldlm.metrics import reconstruction_scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("autoencoder")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/e2e/devset.csv"))
    p.add_argument("--column", default="ref")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    model = load_autoencoder(a.autoencoder, device=a.device)
    texts = load_texts(a.data, text_column=a.column, limit=a.limit).texts
    start = time.perf_counter()
    outputs = reconstruct(model, texts, a.batch_size)
    seconds = time.perf_counter() - start
    s = reconstruction_scores(texts, outputs)
    print(f"{a.data}: {s.rows} texts, exact match {s.exact_match:.4f}, BLEU {s.bleu:.2f}, "
          f"{seconds:.1f} s on {a.device}")
    print(json.dumps({**s.as_dict(), "seconds": round(seconds, 2), "data": a.data,
                      "autoencoder": a.autoencoder}))


if __name__ == "__main__":
    main()
