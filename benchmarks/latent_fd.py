"""Which denoiser: every architecture x objective trained for the same wall-clock budget on a
train store, sampled with one sampler, and scored by the latent Frechet distance to the rows of
a reference store (the dev store, say), between two reference rows: train latents against the
reference (the floor: what a perfect model of the train distribution would score) and
Gaussian noise with the train store's per-dimension mean and std (the ceiling).

    python benchmarks/latent_fd.py TRAIN_STORE DEV_STORE [--archs mlp,transformer,unet2d]
        [--objectives eps,x0,v] [--minutes 2] [--num-samples 1000] [--ref-rows 2000]
        [--scheduler dpm-solver] [--steps 20] [--size small] [--batch-size 256]
        [--learning-rate 1e-3] [--warmup-steps 200] [--calibration-steps 30]
        [--mixed-precision no] [--device cpu|cuda] [--workdir DIR] [--seed 42]

The budget: `train_diffusion` has no time limit, and stopping it early from its reporter
leaves no final model (nor a finished cosine lr schedule), so each configuration first
trains `--calibration-steps` steps in a throwaway run to measure its steps/s, then trains a
fresh run for max_steps = budget x steps/s. "train s" is the measured training loop of that
run (first step to last; model building, the final checkpoint and saving excluded), so it
shows how close each configuration came to the budget. No held-out rows, no sampling and
no checkpoints during training. Every FD uses `--num-samples` rows on the model side (the
floor: a random subset of the train store of that size), so the finite-sample bias is the
same in every row. With more latent dimensions (k*d) than rows the covariances are singular
and the FD is dominated by that bias: compare rows, not absolute values. On E2E, dev describes
other meaning representations than train (../shared/data/e2e/SOURCE.md), so the floor is far
from 0; a store of held-out train rows is the reference SOURCE.md asks for unconditional
figures, and works here just as well.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ldlm.errors import RuntimeFailure, first_line
from ldlm.metrics import frechet_distance
from ldlm.progress import Reporter
from ldlm.sample import sample_latents
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion


class StepClock(Reporter):
    """Records when each optimiser step of `train_diffusion` ends (its reporter is called once
    per step with the loss), and when the training loop started."""

    def __init__(self):
        self.started, self.times = 0.0, []

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        self.started, self.times = time.perf_counter(), []

    def advance(self, n: int = 1, **fields: object) -> None:
        if "loss" in fields:
            self.times.append(time.perf_counter())


def quiet_libraries() -> None:
    """Keep diffusers / accelerate warnings off the terminal: stdout is the table."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")


def use_device(device: str) -> None:
    """accelerate picks the training device itself: steer it (cpu even where CUDA is)."""
    dev = torch.device(device)
    if dev.type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
    elif dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev.index)


def train_args(a: argparse.Namespace, arch: str, objective: str, max_steps: int) -> TrainArgs:
    never = 10**9  # epochs: no sampling and no checkpoints during training
    return TrainArgs(
        arch=arch, size=a.size, objective=objective, max_steps=max_steps, batch_size=a.batch_size,
        learning_rate=a.learning_rate, lr_warmup_steps=min(a.warmup_steps, max_steps // 4),
        mixed_precision=a.mixed_precision, seed=a.seed, save_samples_epochs=never,
        save_model_epochs=never, checkpoints_total_limit=1, eval_rows=0, eval_samples=2,
        eval_inference_steps=1,
    )


def calibrate(a: argparse.Namespace, arch: str, objective: str, work: Path) -> float:
    """Steady steps/s of one configuration, from a short throwaway run."""
    steps = a.calibration_steps
    skip = max(1, steps // 4)  # the first steps are slower (allocation, caches)
    clock = StepClock()
    with tempfile.TemporaryDirectory(dir=work, prefix=".calibrate-") as tmp:
        train_diffusion(a.train_store, Path(tmp) / "run", train_args(a, arch, objective, steps), clock)
    return (steps - skip) / max(clock.times[-1] - clock.times[skip - 1], 1e-9)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                      for r in [header, *rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("train_store")
    p.add_argument("ref_store", metavar="dev_store")
    p.add_argument("--archs", default="mlp,transformer,unet2d")
    p.add_argument("--objectives", default="eps,x0,v")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per configuration")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--ref-rows", type=int, default=2000, help="reference store rows (the first)")
    p.add_argument("--scheduler", default="dpm-solver", choices=["ddpm", "ddim", "dpm-solver"])
    p.add_argument("--steps", type=int, default=20, help="sampler inference steps")
    p.add_argument("--size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200,
                   help="lr warmup (capped at a quarter of the steps of a run)")
    p.add_argument("--calibration-steps", type=int, default=30)
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.calibration_steps < 4 or a.num_samples < 2 or a.minutes <= 0:
        p.error("--calibration-steps must be >= 4, --num-samples >= 2 and --minutes > 0")
    archs, objectives = a.archs.split(","), a.objectives.split(",")
    quiet_libraries()
    use_device(a.device)

    train, ref = LatentStore.open(a.train_store), LatentStore.open(a.ref_store)
    if train.latent_shape != ref.latent_shape or train.latent_space != ref.latent_space:
        p.error(f"the stores hold different latents: {train.latent_space} {train.latent_shape} and "
                f"{ref.latent_space} {ref.latent_shape}")
    rng = np.random.default_rng(a.seed)
    ref_x = ref.read_latents(0, min(a.ref_rows, ref.rows))
    n = min(a.num_samples, train.rows)
    pick = np.sort(rng.choice(train.rows, n, replace=False))
    subset = train.array("latents").get_orthogonal_selection((pick, slice(None), slice(None)))  # (n, k, d)
    floor = frechet_distance(subset, ref_x)
    mean, std = train.stats()
    noise = mean + std * rng.standard_normal((a.num_samples, *train.latent_shape)).astype(np.float32)
    ceiling = frechet_distance(noise, ref_x)

    tmp = tempfile.TemporaryDirectory(prefix="ldlm-latent-fd-") if a.workdir is None else None
    work = Path(tmp.name if tmp else a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    taken = [f"{x}-{o}" for x in archs for o in objectives if (work / f"{x}-{o}").exists()]
    if taken:
        p.error(f"--workdir {str(work)!r} already holds {', '.join(taken)}; choose another folder")
    budget = a.minutes * 60
    results = []
    try:
        for arch in archs:
            for objective in objectives:
                rate = calibrate(a, arch, objective, work)
                steps = max(1, round(budget * rate))
                clock = StepClock()
                run = work / f"{arch}-{objective}"
                res = train_diffusion(a.train_store, run, train_args(a, arch, objective, steps), clock)
                seconds = clock.times[-1] - clock.started
                start = time.perf_counter()
                fd, error = None, None
                try:
                    x, _ = sample_latents(run, num_samples=a.num_samples, num_inference_steps=a.steps,
                                          scheduler=a.scheduler, seed=a.seed, device=a.device)
                    fd = frechet_distance(x, ref_x)
                except RuntimeFailure as exc:  # NaN latents: report the row, go on
                    error = first_line(exc)
                results.append({
                    "arch": arch, "objective": objective, "steps": res.steps,
                    "train_seconds": round(seconds, 2), "steps_per_s": round(res.steps / seconds, 2),
                    "calibrated_steps_per_s": round(rate, 2), "final_loss": res.loss,
                    "sample_seconds": round(time.perf_counter() - start, 2),
                    "fd": fd, "ratio_to_floor": fd / floor if fd is not None and floor > 0 else None,
                    "error": error,
                })
    finally:
        if tmp:
            tmp.cleanup()

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = [["train latents (floor)", "-", "-", "-", "-", "-", f(floor, ".4f"), "1.00"],
            ["Gaussian, train mean/std", "-", "-", "-", "-", "-", f(ceiling, ".4f"),
             f(ceiling / floor if floor > 0 else None, ".2f")]]
    rows += [[r["arch"], r["objective"], str(r["steps"]), f(r["train_seconds"], ".1f"),
              f(r["steps_per_s"], ".1f"), f(r["sample_seconds"], ".1f"),
              f(r["fd"], ".4f") if r["error"] is None else "failed", f(r["ratio_to_floor"], ".2f")]
             for r in results]
    print(f"train {a.train_store} ({train.rows} rows, latents {train.latent_shape}), reference "
          f"{a.ref_store} ({len(ref_x)} rows); budget {budget:.0f} s per run, size {a.size}, batch "
          f"{a.batch_size}, lr {a.learning_rate}; {a.num_samples} samples with {a.scheduler} "
          f"{a.steps} steps; device {a.device}, torch threads {torch.get_num_threads()}")
    print(table(rows, ["arch", "objective", "steps", "train s", "steps/s", "sample s", "FD",
                       "x floor"]))
    for r in results:
        if r["error"]:
            print(f"{r['arch']}-{r['objective']} failed: {r['error']}")
    print(json.dumps({
        "benchmark": "latent_fd", "train_store": a.train_store, "ref_store": a.ref_store,
        "ref_rows": len(ref_x), "latent_shape": list(train.latent_shape), "budget_s": budget,
        "size": a.size, "batch_size": a.batch_size, "learning_rate": a.learning_rate,
        "num_samples": a.num_samples, "scheduler": a.scheduler, "inference_steps": a.steps,
        "device": a.device, "threads": torch.get_num_threads(), "mixed_precision": a.mixed_precision,
        "floor_fd": floor, "ceiling_fd": ceiling, "results": results,
    }))


if __name__ == "__main__":
    main()
