"""Sampling cost against quality: one trained run sampled with several samplers and step
counts (same seed, same batch size, hence the same starting noise), each timed (wall seconds,
latents/s) and scored by the latent Frechet distance to the rows of a reference store, and
that FD as a ratio to the one of the first sampler listed (DDPM with 1000 steps by default,
the source designs' sampler).

    python benchmarks/samplers.py RUN_DIR REF_STORE
        [--samplers ddpm:1000,ddim:50,dpm-solver:20,dpm-solver:10,unipc:20] [--num-samples 500]
        [--ref-rows 2000] [--batch-size B] [--device cpu|cuda] [--seed 42]

The run is loaded once; the timings cover `iter_samples` (noise, the sampler loop, undoing
the standardisation, the copy back to the CPU), after one short warm-up call. The FD of a
few hundred latents carries a finite-sample bias that every row shares: compare the rows.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from ldlm.errors import RuntimeFailure, first_line
from ldlm.metrics import frechet_distance
from ldlm.run import load_run
from ldlm.sample import SamplingArgs, iter_samples
from ldlm.schedulers import SAMPLERS
from ldlm.store import LatentStore


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """'ddpm:1000,ddim:50' -> [('ddpm', 1000), ('ddim', 50)]."""
    out = []
    for item in text.split(","):
        name, _, steps = item.strip().rpartition(":")
        if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not SAMPLER:STEPS with SAMPLER one of {', '.join(SAMPLERS)}")
        out.append((name, int(steps)))
    return out


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                      for r in [header, *rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("ref_store")
    p.add_argument("--samplers", type=parse_samplers,
                   default=parse_samplers("ddpm:1000,ddim:50,dpm-solver:20,dpm-solver:10,unipc:20"),
                   help="SAMPLER:STEPS,...; FD ratios are to the first")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--ref-rows", type=int, default=2000, help="reference store rows (the first)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the library's (256)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.num_samples < 2:
        p.error("--num-samples must be at least 2 (a Frechet distance needs two rows)")
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")

    run = load_run(a.run_dir, a.device)
    ref = LatentStore.open(a.ref_store)
    if ref.latent_shape != run.latent_shape or ref.latent_space != run.meta.get("latent_space"):
        p.error(f"the run makes latents {run.meta.get('latent_space')} {run.latent_shape}, the store "
                f"holds {ref.latent_space} {ref.latent_shape}")
    ref_x = ref.read_latents(0, min(a.ref_rows, ref.rows))
    list(iter_samples(run, 2, SamplingArgs(num_inference_steps=2, scheduler="ddim", seed=a.seed),
                      a.device))  # warm-up: kernels, caches

    results = []
    for name, steps in a.samplers:
        start = time.perf_counter()
        fd, error = None, None
        try:
            args = SamplingArgs(num_inference_steps=steps, scheduler=name, seed=a.seed,
                                batch_size=a.batch_size)
            x = np.concatenate(list(iter_samples(run, a.num_samples, args, a.device)))
            seconds = time.perf_counter() - start
            fd = frechet_distance(x, ref_x)
        except RuntimeFailure as exc:  # NaN latents: report the row, go on
            seconds, error = time.perf_counter() - start, first_line(exc)
        results.append({"sampler": name, "steps": steps, "seconds": round(seconds, 3),
                        "latents_per_s": round(a.num_samples / seconds, 2), "fd": fd, "error": error})
    base = results[0]["fd"]
    for r in results:
        r["fd_ratio"] = r["fd"] / base if r["fd"] is not None and base else None

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    base_name = f"{results[0]['sampler']}-{results[0]['steps']}"
    rows = [[r["sampler"], str(r["steps"]), f(r["seconds"], ".2f"), f(r["latents_per_s"], ".1f"),
             f(r["fd"], ".4f") if r["error"] is None else "failed", f(r["fd_ratio"], ".3f")]
            for r in results]
    m = run.meta
    print(f"run {a.run_dir} ({m['arch']}, {m['objective']}, {m['steps']} steps, latents "
          f"{run.latent_shape}); reference {a.ref_store} ({len(ref_x)} rows); {a.num_samples} samples, "
          f"seed {a.seed}, device {a.device}, torch threads {torch.get_num_threads()}")
    print(table(rows, ["sampler", "steps", "seconds", "latents/s", "FD", f"FD / {base_name}"]))
    for r in results:
        if r["error"]:
            print(f"{r['sampler']}-{r['steps']} failed: {r['error']}")
    print(json.dumps({
        "benchmark": "samplers", "run_dir": a.run_dir, "arch": m["arch"], "objective": m["objective"],
        "train_steps": m["steps"], "ref_store": a.ref_store, "ref_rows": len(ref_x),
        "latent_shape": list(run.latent_shape), "num_samples": a.num_samples,
        "batch_size": a.batch_size, "seed": a.seed, "device": a.device,
        "threads": torch.get_num_threads(), "fd_ratio_to": base_name, "results": results,
    }))


if __name__ == "__main__":
    main()
