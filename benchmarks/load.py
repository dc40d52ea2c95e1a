"""Memory under load: peak RSS of `ldlm encode` over 100k .. 1M short rows, and of
`ldlm sample --out` writing 10k .. 100k latents in batches, each in a fresh process.

Each measurement runs the real command (`ldlm.cli.app`, the same code as the console
script) in a child process on one thread, which reports its own peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) and the RSS after loading the data. A tiny
autoencoder and a tiny denoiser are built first (seconds), so the figures show the memory
the pipeline itself needs, not the model's.

    OMP_NUM_THREADS=1 python benchmarks/load.py [--work /tmp/ldlm-load] \
        [--encode-rows 100000 300000 1000000] [--sample-rows 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

WORDS = ("the cat sat on a mat near river pub cheap food coffee shop family friendly city "
         "centre rated high low price range eagle golden curry").split()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_data(path: Path, rows: int) -> None:
    """`rows` short synthetic lines (4-12 words), deterministic."""
    if path.exists():
        return
    import random

    rng = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) + f" {i}\n")
    tmp.replace(path)


def setup(work: Path) -> tuple[Path, Path]:
    """A tiny autoencoder and a tiny diffusion run (reused when present)."""
    from ldlm.autoencoder import AutoencoderConfig, is_autoencoder_dir
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset
    from ldlm.train import TrainArgs, train_diffusion

    ae, store, run = work / "ae", work / "small.zarr", work / "run"
    data = work / "rows-2000.txt"
    make_data(data, 2000)
    rows = load_texts(str(data))
    if not is_autoencoder_dir(ae):
        train_autoencoder(rows, ae, AutoencoderConfig(size="tiny", max_length=16, latent_tokens=4,
                                                    latent_dim=16),
                          AutoencoderTrainArgs(max_steps=20, batch_size=32, eval_rows=0), overwrite=True)
    encode_dataset(rows, ae, store, batch_size=256, chunk_rows=1024)
    if not (run / "ldlm_run.json").exists():
        train_diffusion(store, run, TrainArgs(
            size="tiny", max_steps=20, batch_size=64, lr_warmup_steps=1, eval_samples=4,
            eval_inference_steps=2, save_samples_epochs=1000, save_model_epochs=1000))
    return ae, run


def worker(argv: list[str]) -> None:
    """Run one ldlm command in this process; print its peak RSS as JSON."""
    import torch

    torch.set_num_threads(1)
    import ldlm.data
    from ldlm.cli import app

    after_load: list[float] = []
    load = ldlm.data.load_texts

    def measured_load(*a, **kw):
        rows = load(*a, **kw)
        after_load.append(_rss_mb())
        return rows

    ldlm.data.load_texts = measured_load
    started = time.perf_counter()
    try:
        app(argv, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1),
                      "peak_rss_mb": round(_peak_mb(), 1),
                      "rss_after_load_mb": round(after_load[0], 1) if after_load else None}))


def measure(argv: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "_worker", *argv], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{argv} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", default="/tmp/ldlm-load")
    p.add_argument("--encode-rows", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--sample-rows", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--chunk-rows", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=256)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ae, run = setup(work)
    results = []
    for n in a.encode_rows:
        data = work / f"rows-{n}.txt"
        make_data(data, n)
        store = work / f"enc-{n}.zarr"
        r = measure(["encode", str(data), "--autoencoder", str(ae), "--store", str(store),
                     "--batch-size", str(a.batch_size), "--chunk-rows", str(a.chunk_rows),
                     "--overwrite", "--device", "cpu"])
        r.update(command="encode", rows=n, rows_per_s=round(n / r["seconds"]))
        results.append(r)
        print(json.dumps(r), flush=True)
    for n in a.sample_rows:
        out = work / f"samples-{n}.ldlm"
        r = measure(["sample", str(run), "--num-samples", str(n), "--num-inference-steps", "2",
                     "--scheduler", "ddim", "--batch-size", "1000", "--out", str(out),
                     "--device", "cpu"])
        r.update(command="sample", rows=n, bytes=out.stat().st_size)
        results.append(r)
        print(json.dumps(r), flush=True)
    print("\n| command | rows | seconds | peak RSS (MB) | RSS after loading data (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['command']} | {r['rows']:,} | {r['seconds']} | {r['peak_rss_mb']} | "
              f"{r['rss_after_load_mb'] if r['rss_after_load_mb'] is not None else '-'} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2:])
    else:
        main()
