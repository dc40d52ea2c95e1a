"""Data loading cost of training: optimiser steps per second of `ldlm.train.train_diffusion`
on a store, against a bare torch loop that steps the same denoiser on a tensor already on
the device, indexed with random batch indices; and between the two, the bare loop fed by
ldlm's own data path (`DataOrder` batches, `InMemoryRows.batch`, `Standardiser`, the copy
to the device), which splits the gap into data loading and the rest (accelerate, the loop's
bookkeeping). Goal: train_diffusion at >= 0.95 x the bare loop.

    python benchmarks/train_throughput.py STORE [--arch mlp] [--objective eps] [--size small]
        [--batch-size 256] [--steps 200] [--warmup 20] [--memory-limit-mb 2048]
        [--mixed-precision no|bf16] [--threads N] [--repeats 1] [--device cpu|cuda]

Fair by construction: one process, so the same torch threads; the same denoiser config and
initial weights (`denoiser_config` + `build_denoiser` from the same TrainArgs and seed); the
same `Diffusion.loss` (its noise drawn on the CPU, as in training), batch size, AdamW, lr
schedule, gradient clipping and EMA (included on every side: train_diffusion always keeps
one); every step ends with `loss.item()` on every side, as train_diffusion's does (on CUDA
that is also what makes per-step timestamps honest). The steps timed are those after
`--warmup` steps; train_diffusion's timestamps come from its reporter, so model building and
the final checkpoint and save are not timed. `--memory-limit-mb 0` makes train_diffusion read
every batch from zarr instead of memory. Best of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ldlm.batches import DataOrder, InMemoryRows
from ldlm.denoisers import build_denoiser, denoiser_config
from ldlm.diffusion import Diffusion, Standardiser
from ldlm.holdout import holdout_rows
from ldlm.progress import Reporter
from ldlm.schedulers import make_noise_scheduler
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion


class StepClock(Reporter):
    """Records when each optimiser step of `train_diffusion` ends (its reporter is called once
    per step with the loss)."""

    def __init__(self):
        self.times = []

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        self.times = []

    def advance(self, n: int = 1, **fields: object) -> None:
        if "loss" in fields:
            self.times.append(time.perf_counter())


def rate(times: list[float], warmup: int) -> float:
    """Steps/s over the steps after the first `warmup` (times: when each step ended)."""
    return (len(times) - warmup) / (times[-1] - times[warmup - 1])


def bare_loop(store: LatentStore, args: TrainArgs, device: torch.device, warmup: int,
              ldlm_data: bool) -> float:
    """Steps/s of a plain torch loop; batches from a device tensor, or from ldlm's data path."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    k, d = store.latent_shape
    n = store.rows - holdout_rows(store.rows, args.eval_rows)
    standard = Standardiser(*store.stats())
    if ldlm_data:
        data = InMemoryRows(store, n)
        order = DataOrder(n, min(args.batch_size, n), 1, args.seed)
    else:
        x_all = standard.forward(torch.from_numpy(store.read_latents(0, n).astype(np.float32)))
        x_all = x_all.to(device)  # (n, k, d), standardised
        picks = torch.Generator(device=device).manual_seed(args.seed)
    torch.manual_seed(args.seed)  # the weights train_diffusion starts from (accelerate's set_seed)
    model = build_denoiser(args.arch, denoiser_config(args.arch, (k, d), args.size, args.self_condition,
                                                      **args.denoiser)).to(device).train()
    diffusion = Diffusion(make_noise_scheduler(args.schedule, args.objective), args.objective,
                          args.self_condition)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    lr = get_scheduler(args.lr_scheduler, opt, num_warmup_steps=args.lr_warmup_steps,
                       num_training_steps=args.max_steps)
    ema = EMAModel(model.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=0.75)
    ema.to(device)
    gen = torch.Generator().manual_seed(args.seed)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if args.mixed_precision == "bf16"
           else nullcontext())
    batch = min(args.batch_size, n)
    times = []
    for step in range(args.max_steps):
        if ldlm_data:
            x0 = standard.forward(torch.from_numpy(data.batch(order, step, 0).latents).to(device))
        else:
            x0 = x_all[torch.randint(0, n, (batch,), device=device, generator=picks)]  # (B, k, d)
        with amp:
            loss = diffusion.loss(model, x0, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        opt.step()
        lr.step()
        opt.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        loss.item()
        times.append(time.perf_counter())
    return rate(times, warmup)


def ldlm_loop(store_path: str, args: TrainArgs, warmup: int) -> float:
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="ldlm-train-throughput-") as tmp:
        train_diffusion(store_path, Path(tmp) / "run", args, clock)
    return rate(clock.times, warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("store")
    p.add_argument("--arch", default="mlp", choices=["mlp", "transformer", "unet2d"])
    p.add_argument("--objective", default="eps", choices=["eps", "x0", "v"])
    p.add_argument("--size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=200, help="optimiser steps timed")
    p.add_argument("--warmup", type=int, default=20, help="optimiser steps before the timing")
    p.add_argument("--memory-limit-mb", type=int, default=TrainArgs.memory_limit_mb,
                   help="train_diffusion reads the store per batch above this size (0: always)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 1 or a.repeats < 1:
        p.error("--steps, --warmup and --repeats must be at least 1")
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cpu":  # accelerate picks train_diffusion's device itself: steer it
        os.environ["ACCELERATE_USE_CPU"] = "true"
    elif device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
        device = torch.device("cuda", torch.cuda.current_device())

    store = LatentStore.open(a.store)
    never = 10**9  # epochs: no sampling and no checkpoints inside the timed loop
    args = TrainArgs(arch=a.arch, size=a.size, objective=a.objective, max_steps=a.warmup + a.steps,
                     batch_size=a.batch_size, learning_rate=1e-3, lr_warmup_steps=a.warmup,
                     mixed_precision=a.mixed_precision, seed=a.seed, save_samples_epochs=never,
                     save_model_epochs=never, checkpoints_total_limit=1, eval_rows=0, eval_samples=2,
                     eval_inference_steps=1, memory_limit_mb=a.memory_limit_mb)
    best = {"bare": 0.0, "bare_ldlm_data": 0.0, "train_diffusion": 0.0}
    for _ in range(a.repeats):  # interleaved, so that a slow spell of the machine hits all sides
        best["bare"] = max(best["bare"], bare_loop(store, args, device, a.warmup, False))
        best["bare_ldlm_data"] = max(best["bare_ldlm_data"], bare_loop(store, args, device, a.warmup, True))
        best["train_diffusion"] = max(best["train_diffusion"], ldlm_loop(a.store, args, a.warmup))
    in_memory = store.rows * np.prod(store.latent_shape) * 4 <= a.memory_limit_mb * 2**20
    labels = {
        "bare": "bare torch loop, batches indexed from a device tensor",
        "bare_ldlm_data": "bare torch loop, batches from ldlm's data path",
        "train_diffusion": "ldlm train_diffusion",
    }
    width = max(map(len, labels.values()))
    print(f"store {a.store} ({store.rows} rows, latents {store.latent_shape}, "
          f"{'in memory' if in_memory else 'read per batch from zarr'}); {a.arch} {a.size}, "
          f"{a.objective}, batch {a.batch_size}, mixed precision {a.mixed_precision}; {a.steps} steps "
          f"timed after {a.warmup}, best of {a.repeats}; EMA included on all sides; device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':{width}}  {'steps/s':>9}  {'ratio':>6}")
    for key, label in labels.items():
        print(f"{label:{width}}  {best[key]:9.2f}  {best[key] / best['bare']:6.3f}")
    ratio = best["train_diffusion"] / best["bare"]
    print(f"goal: train_diffusion >= 0.95 x bare: {'met' if ratio >= 0.95 else 'NOT met'} ({ratio:.3f})")
    print(json.dumps({
        "benchmark": "train_throughput", "store": a.store, "rows": store.rows,
        "latent_shape": list(store.latent_shape), "in_memory": bool(in_memory), "arch": a.arch,
        "size": a.size, "objective": a.objective, "batch_size": a.batch_size, "steps": a.steps,
        "warmup": a.warmup, "repeats": a.repeats, "mixed_precision": a.mixed_precision, "ema": True,
        "device": str(device), "threads": torch.get_num_threads(),
        "steps_per_s": {k: round(v, 3) for k, v in best.items()},
        "ratio_ldlm_data": best["bare_ldlm_data"] / best["bare"], "ratio": ratio,
    }))


if __name__ == "__main__":
    main()
