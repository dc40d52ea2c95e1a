"""Training on a store larger than memory: peak memory and steps/s of `train_diffusion`
streaming a synthetic store chunk by chunk, against the same run with the store in memory.

    python benchmarks/streaming.py [--rows 1500000] [--latent-shape 8 64] [--chunk-rows 4096]
        [--steps 1000] [--warmup 100] [--batch-size 256] [--size tiny]
        [--stream-memory-mb 512] [--repeats 2] [--dir /tmp] [--keep]

Writes a store of random latents (`--rows` x k x d float32, the layout `ldlm encode` writes)
under `--dir`, then runs the same training twice, each in a fresh subprocess with one torch
thread, back to back: once with --memory-limit-mb above the store size (the rows are loaded
in memory) and once with --memory-limit-mb `--stream-memory-mb` (streamed in shuffled windows
of chunks). Each subprocess reports its own peak RSS (getrusage) and the steps/s of the
`--steps` optimiser steps after `--warmup` (timestamps from train_diffusion's reporter, so
loading the store, building the model and the final save are not timed). With --repeats R the
two modes alternate R times (in-memory, streaming, in-memory, ...) and each keeps its best
rate and its largest peak RSS, so load from other jobs on a shared machine hits both alike.
Prints a table and deletes the store unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_store(path: Path, rows: int, shape: tuple[int, int], chunk_rows: int) -> float:
    """A complete store of standard-normal latents; returns its latent bytes."""
    from ldlm.store import LatentStore

    store = LatentStore.create(str(path), rows=rows, latent_shape=shape, chunk_rows=chunk_rows,
                               attributes={"latent_space": "synthetic-benchmark", "autoencoder": None})
    rng = np.random.default_rng(0)
    sums = {}
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        x = rng.standard_normal((b - a, *shape), dtype=np.float32)
        store.write_chunk(c, x, [""] * (b - a), np.zeros(b - a, np.int32))
        sums[c] = store.chunk_sums(x)
    store.finalize(sums)
    return rows * shape[0] * shape[1] * 4


def worker(opts) -> None:
    """One training run; prints a JSON line with its peak RSS and steps/s."""
    import torch

    from ldlm.progress import Reporter
    from ldlm.train import TrainArgs, train_diffusion

    torch.set_num_threads(1)

    class StepClock(Reporter):
        def __init__(self):
            self.times, self.lines = [], []

        def advance(self, n: int = 1, **fields: object) -> None:
            if "loss" in fields:
                self.times.append(time.perf_counter())

        def log(self, message: str) -> None:
            self.lines.append(message)

    clock = StepClock()
    total = opts.warmup + opts.steps
    args = TrainArgs(size=opts.size, batch_size=opts.batch_size, max_steps=total, lr_warmup_steps=10,
                     memory_limit_mb=opts.memory_limit_mb, eval_samples=2, eval_inference_steps=1,
                     save_samples_epochs=10**6, save_model_epochs=10**6)
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        train_diffusion(opts.store, Path(tmp) / "run", args, reporter=clock)
    t = clock.times
    print(json.dumps({
        "steps_per_s": opts.steps / (t[-1] - t[opts.warmup - 1]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "streaming": any(line.startswith("streaming") for line in clock.lines),
        "log": clock.lines,
    }))


def run_mode(opts, store: Path, memory_limit_mb: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--store", str(store), "--memory-limit-mb",
           str(memory_limit_mb), "--steps", str(opts.steps), "--warmup", str(opts.warmup),
           "--batch-size", str(opts.batch_size), "--size", opts.size, "--dir", str(opts.dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"worker failed ({p.returncode}):\n{p.stderr[-3000:]}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--latent-shape", type=int, nargs=2, default=(8, 64))
    ap.add_argument("--chunk-rows", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--stream-memory-mb", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic store")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--memory-limit-mb", type=int, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.worker:
        return worker(opts)

    root = Path(tempfile.mkdtemp(prefix="ldlm-streaming-bench-", dir=opts.dir))
    store = root / "store.zarr"
    try:
        started = time.perf_counter()
        size = write_store(store, opts.rows, tuple(opts.latent_shape), opts.chunk_rows)
        mb = size / 2**20
        print(f"store: {opts.rows} rows x {tuple(opts.latent_shape)} float32 = {mb:.0f} MB in chunks of "
              f"{opts.chunk_rows} rows, written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results: dict[str, dict] = {}
        for _ in range(opts.repeats):
            for mode, limit in (("in-memory", int(mb) * 2 + 1024), ("streaming", opts.stream_memory_mb)):
                r = run_mode(opts, store, limit)
                print(f"{mode}: {json.dumps(r)}", file=sys.stderr)
                best = results.setdefault(mode, {**r, "limit": limit, "rates": []})
                best["rates"].append(round(r["steps_per_s"], 2))
                best["steps_per_s"] = max(best["steps_per_s"], r["steps_per_s"])
                best["peak_rss_mb"] = max(best["peak_rss_mb"], r["peak_rss_mb"])
        if results["in-memory"]["streaming"] or not results["streaming"]["streaming"]:
            raise SystemExit("the runs did not take the paths they were meant to; see the logs above")
        base = results["in-memory"]["steps_per_s"]
        print("| store | mode | --memory-limit-mb | peak RSS | steps/s (best; all) | vs in-memory |")
        print("|---|---|---|---|---|---|")
        for mode, r in results.items():
            print(f"| {mb / 1024:.2f} GB ({opts.rows} rows) | {mode} | {r['limit']} | "
                  f"{r['peak_rss_mb']:.0f} MB | {r['steps_per_s']:.1f}; {r['rates']} | "
                  f"{r['steps_per_s'] / base:.2f} |")
    finally:
        if not opts.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
