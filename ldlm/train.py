"""Stage: latent store -> diffusion run (a denoiser trained with accelerate, EMA, checkpoints).

RUN_DIR (the layout is `ldlm.run`'s): checkpoint-<step>/ folders (accelerate states: model,
EMA, optimiser, lr, RNG, data position; the last `checkpoints_total_limit` kept), samples/
(latent files sampled from the EMA model during training), metrics.jsonl (loss per epoch,
Frechet distance of samples to held-out latents beside its floor), and at the end the model
(`save_run`).

The Frechet distance (FD) of n samples is biased upwards by an amount that shrinks with n (at
n = 256 in 512 dimensions it is several times the FD between two large draws of one
distribution), so each FD is logged beside `fd_floor`: the FD of n true training latents to
the same held-out rows, what a perfect denoiser would score at that n. An FD near its floor
is the estimator's limit, not a denoiser that stopped learning.

Only the store is read: no encoder runs here. Latents are standardised with the store's
statistics before diffusion; the statistics travel with the run and `sample` restores them.

Conditional runs (--conditional, a store encoded with --condition-column): the denoiser also
takes each row's condition, replaced by the learned null condition with probability
`condition_dropout` (classifier-free guidance); ldlm_run.json records the condition spec.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.args import TrainArgs
from ldlm.batches import (
    WINDOWS_RESIDENT,
    ChunkStream,
    ChunkWindowOrder,
    DataOrder,
    InMemoryRows,
    fits_in_memory,
    megabytes,
    window_chunks,
)
from ldlm.checkpoints import check_same, list_checkpoints, remove_leftovers
from ldlm.checkpoints import find_checkpoint as find_checkpoint_in
from ldlm.denoisers import build_denoiser, denoiser_class, denoiser_config
from ldlm.diffusion import Diffusion, Standardiser
from ldlm.distributed import ranks
from ldlm.errors import InputError
from ldlm.files import append_line, own_file, repair_log
from ldlm.guidance import ConditionedDenoiser, drop_conditions
from ldlm.holdout import holdout, holdout_rows
from ldlm.latent_file import LatentHeader, write_latent_file
from ldlm.loop import LoopArgs, Steps, TrainingLoop, diverged
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import EPOCHS
from ldlm.run import RUN_FILE, RUN_FORMAT, push_to_hub, save_run
from ldlm.schedulers import make_noise_scheduler, make_sampler
from ldlm.store import LatentStore

CHECKPOINT_FILE = "ldlm_checkpoint.json"
FLOOR_CHUNKS = 32  # streamed stores: chunks read (once) for the true latents of the FD floor


SAME_LATENT_STD = 1e-4  # a store whose latents vary less than this everywhere holds one latent


@dataclass
class TrainResult:
    run_dir: Path  # where the run is
    steps: int  # optimiser steps done in total
    loss: float | None  # mean loss of the last epoch logged
    frechet_distance: float | None  # of the last samples to the held-out latents
    fd_floor: float | None = None  # the FD of as many true training latents to the same rows


class TrainState:
    """Step and noise-generator state, checkpointed beside the model (ldlm.loop)."""

    def __init__(self, generator: torch.Generator):
        self.step, self.generator = 0, generator
        # losses of the epoch under way and the last epoch's mean: a resumed run reports the
        # same loss as an uninterrupted one
        self.losses: list[float] = []
        self.last_loss: float | None = None

    def state_dict(self) -> dict:
        return {"step": self.step, "generator": self.generator.get_state(),
                "losses": list(self.losses), "last_loss": self.last_loss}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        self.losses = [float(x) for x in state.get("losses", [])]
        self.last_loss = state.get("last_loss")


# ----- checkpoints -----------------------------------------------------------------------
def _checkpoints(run: Path) -> list[Path]:
    return list_checkpoints(run, CHECKPOINT_FILE)


def find_checkpoint(run: Path, resume: str) -> Path:
    """The checkpoint to resume: the latest in RUN_DIR ("latest"), or the folder named."""
    return find_checkpoint_in(run, resume, CHECKPOINT_FILE)


# ----- training ----------------------------------------------------------------------------
def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


RUN_LOGS = ("metrics.jsonl", "samples", "logs")  # what a run writes beside its checkpoints and model


def _append_metrics(run: Path, record: dict) -> None:
    append_line(run, "metrics.jsonl", record, f"run {str(run)!r}")  # never through a link out of the run


def _check_run_files(run: Path, reporter: Reporter) -> None:
    """Before a run writes anything: its logs are no links out of it (InputError naming the link),
    and a torn last line of metrics.jsonl (a kill mid-write) is cut off, so appends stay whole."""
    for name in RUN_LOGS:
        own_file(run, name, f"run {str(run)!r}")
    cut = repair_log(run / "metrics.jsonl")
    if cut:
        reporter.log(f"metrics.jsonl ended in a torn line ({cut} bytes, from an interrupted write); "
                     "removed it")


class _Trainer:
    """The pieces of one run; `train_diffusion` drives them."""

    def __init__(self, store: LatentStore, out: Path, args: TrainArgs, reporter: Reporter):
        from accelerate.utils import ProjectConfiguration, set_seed
        from diffusers.training_utils import EMAModel

        self.store, self.out, self.args, self.reporter = store, out, args, reporter
        self.k, self.d = store.latent_shape
        # the last rows (their figures), so that the training rows stream as one range
        self.train_rows, self.heldout = holdout(store.rows, holdout_rows(store.rows, args.eval_rows), "last")
        self.held, n_train = len(self.heldout), len(self.train_rows)
        if n_train < 1:
            raise InputError(f"store {store.path!r} has no rows to train on; encode more texts")
        group = ranks()  # one process, or this process's place under `accelerate launch`
        self.rank, self.is_main = group.index, group.is_main
        set_seed(args.seed)
        batch = min(args.batch_size, max(1, n_train // group.count))
        self.streaming = not fits_in_memory(store, n_train, args.memory_limit_mb)
        if self.streaming:  # whole chunks in shuffled windows, a bounded number in memory
            chunk_bytes = store.chunk_rows * self.k * self.d * 4
            window = window_chunks(args.shuffle_window_chunks, chunk_bytes, batch, store.chunk_rows,
                                   args.memory_limit_mb)
            self.order = ChunkWindowOrder(n_train, store.chunk_rows, batch, group.count, args.seed, window)
        else:
            self.order = DataOrder(n_train, batch, group.count, args.seed)
        epoch_steps = math.ceil((args.num_epochs or EPOCHS) * self.order.per_epoch
                                / args.gradient_accumulation_steps)
        self.spec = store.condition_spec if args.conditional else None
        if args.conditional and self.spec is None:
            raise InputError(f"--conditional: store {store.path!r} has no conditions; encode it with "
                             "`ldlm encode --condition-column COL`, or drop --conditional")
        if self.streaming:
            self.data = ChunkStream(store, self.order, self.rank, args.conditional)
            if self.is_main:
                held, size = WINDOWS_RESIDENT * self.order.window * chunk_bytes, n_train * self.k * self.d * 4
                reporter.log(f"streaming {n_train} training rows ({megabytes(size)} > "
                             f"--memory-limit-mb {args.memory_limit_mb}) in shuffled windows of "
                             f"{self.order.window} chunks, at most {megabytes(held)} of them in memory")
        else:
            self.data = InMemoryRows(store, n_train, args.conditional)
        mean, std = store.stats()
        if self.is_main and float(np.max(std)) <= SAME_LATENT_STD:
            reporter.log(f"warning: every latent of store {store.path!r} is the same (per-position std "
                         f"{float(np.max(std)):.2g}): the denoiser learns that one latent, its loss goes to "
                         "0 and every sample is that one text; encode a corpus of different texts")
        self.standard = Standardiser(mean, std)
        cond_options = self.spec.model_options() if self.spec else {}
        self.config = denoiser_config(args.arch, (self.k, self.d), args.size, args.self_condition,
                                      **{**cond_options, **args.denoiser})
        model = build_denoiser(args.arch, self.config)
        self.noise = make_noise_scheduler(args.schedule, args.objective)
        self.diffusion = Diffusion(self.noise, args.objective, args.self_condition)
        self.loop = TrainingLoop(
            model, LoopArgs(**args.loop_budget(epoch_steps, args.num_epochs is not None),
                            learning_rate=args.learning_rate, warmup_steps=args.lr_warmup_steps,
                            schedule=args.lr_scheduler, weight_decay=args.weight_decay,
                            max_grad_norm=args.max_grad_norm,
                            gradient_accumulation_steps=args.gradient_accumulation_steps,
                            mixed_precision=args.mixed_precision),
            log_with="tensorboard" if _has_tensorboard() else None,
            project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
        self.acc, self.core = self.loop.acc, self.loop.core
        self._floor: tuple[int, float] | None = None  # (n, FD floor at n), computed once
        self.last_fd_floor: float | None = None  # the floor beside the last FD logged
        self.fd: float | None = None  # the last FD logged
        self.sampled_at = -1  # the step samples were last saved at
        self.ema = EMAModel(self.core.parameters(), decay=args.ema_decay, use_ema_warmup=True,
                            power=0.75, model_cls=denoiser_class(args.arch), model_config=self.core.config)
        self.ema.to(self.acc.device)
        self.state = TrainState(torch.Generator().manual_seed(args.seed + self.rank))
        self.loop.register(self.ema, self.state)
        # what a checkpoint must share with the run that resumes it (the model, the data order)
        self.identity = {
            "arch": args.arch, "denoiser": self.config, "latent_shape": [self.k, self.d],
            "latent_space": store.latent_space, "objective": args.objective,
            "schedule": args.schedule, "self_condition": args.self_condition,
            "batch_size": args.batch_size, "seed": args.seed,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "store": store.content_id,  # the same latents (older checkpoints lack it)
        }
        if args.conditional:  # unconditional checkpoints keep their old identity
            self.identity["condition_dropout"] = args.condition_dropout

    # -- checkpoints
    def save_checkpoint(self) -> Path:
        def noise_generator(tmp: Path) -> None:
            if self.rank:  # the main process's noise generator is in TrainState
                torch.save(self.state.generator.get_state(), tmp / f"noise_generator_{self.rank}.pt")

        return self.loop.save_checkpoint(self.out, self.state.step, CHECKPOINT_FILE, self.identity,
                                         self.args.checkpoints_total_limit, noise_generator)

    def load_checkpoint(self, ckpt: Path) -> None:
        check_same(ckpt, CHECKPOINT_FILE, self.identity, optional=("store",))
        self.loop.load_checkpoint(ckpt)
        self.ema.to(self.acc.device)
        if self.rank:  # TrainState brought the main process's noise generator: take this rank's own
            own = ckpt / f"noise_generator_{self.rank}.pt"
            if own.is_file():
                self.state.generator.set_state(torch.load(own, weights_only=True))
            else:  # saved by fewer processes: a fresh stream, distinct per rank and step
                self.state.generator.manual_seed(self.args.seed + self.rank + 1_000_003 * self.state.step)

    # -- samples from the EMA weights
    def ema_sample(self, n: int, steps: int, seed: int) -> np.ndarray:
        """n latents (n, k, d) from the EMA model with DDIM, in the store's units."""
        self.ema.store(self.core.parameters())
        self.ema.copy_to(self.core.parameters())
        self.core.eval()
        try:
            sampler = make_sampler("ddim", self.noise.config)
            gen = torch.Generator().manual_seed(seed)
            model = self.core
            if self.spec is not None:  # conditions of the held-out rows (else the first rows), W = 1
                start = self.heldout.start if self.held else 0
                pool = self.store.read_conditions(start, start + (self.held or min(n, self.store.rows)))
                cond = torch.from_numpy(pool[np.arange(n) % len(pool)]).long().to(self.acc.device)
                model = ConditionedDenoiser(self.core, cond)
            z = self.diffusion.sample(model, sampler, (n, self.k, self.d), gen, steps,
                                      device=self.acc.device)
        finally:
            self.ema.restore(self.core.parameters())
            self.core.train()
        return self.standard.inverse(z.float()).cpu().numpy()

    def fd_floor(self, n: int, held: np.ndarray) -> float:
        """The FD of n true training latents to the held-out rows `held` (computed once): the
        best an FD of n samples can be, since the estimator's bias does not shrink with training.
        The n rows are spread evenly over the training rows (whole chunks when streaming, at
        most FLOOR_CHUNKS of them), not one contiguous block: neighbouring rows of a corpus are
        often alike (E2E lists several texts of one meaning representation in a row)."""
        if self._floor is None or self._floor[0] != n:
            from ldlm.metrics import frechet_distance

            n_train = len(self.train_rows)
            if isinstance(self.data, InMemoryRows):
                pool = self.data.rows.latents  # (n_train, k, d)
            else:
                chunks = np.unique(np.linspace(0, (n_train - 1) // self.store.chunk_rows,
                                               FLOOR_CHUNKS).astype(int))
                pool = np.concatenate([self.store.read_latents(
                    *(min(b, n_train) for b in self.store.chunk_bounds(int(c)))) for c in chunks])
            pick = np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)
            self._floor = (n, frechet_distance(pool[pick], held))
        return self._floor[1]

    def save_samples(self, epoch: int) -> float | None:
        step = self.state.step
        x = self.ema_sample(self.args.eval_samples, self.args.eval_inference_steps, self.args.seed)
        header = LatentHeader(self.store.latent_space or "unknown", (self.k, self.d),
                              self.store.attrs.get("autoencoder"),
                              {"run": str(self.out), "step": step, "scheduler": "ddim",
                               "num_inference_steps": self.args.eval_inference_steps})
        target = own_file(self.out, f"samples/samples-{step}.ldlm", f"run {str(self.out)!r}")
        target.parent.mkdir(exist_ok=True)
        write_latent_file(target, header, x)
        fd = floor = None
        if not np.isfinite(x).all():
            self.reporter.log(f"step {step}: samples hold NaN or inf")
        elif self.held:
            from ldlm.metrics import frechet_distance

            held = self.store.read_latents(self.heldout.start)
            fd, floor = frechet_distance(x, held), self.fd_floor(len(x), held)
            self.reporter.log(f"step {step} (epoch {epoch}): latent Frechet distance of {len(x)} samples "
                              f"to {self.held} held-out rows {fd:.4f}, floor {floor:.4f} ({len(x)} "
                              "training rows to the same held-out rows: the best this N can show)")
        _append_metrics(self.out, {"step": step, "epoch": epoch, "samples": len(x),
                                   "frechet_distance": fd, "fd_floor": floor, "heldout_rows": self.held})
        self.last_fd_floor = floor
        return fd

    # -- the run's steps, on the loop's driver (TrainingLoop.run)
    def steps(self) -> Steps:
        return Steps(self.train_step, "train", shown=lambda loss: f"{loss:.4f}",
                     diverged=lambda value, done: diverged(value, done + 1, self.out, CHECKPOINT_FILE,
                                                           self.args.learning_rate),
                     after_step=self.after_step, checkpoint=lambda done: self.save_checkpoint(),
                     checkpointing_steps=self.args.checkpointing_steps,
                     close=self.data.close if self.streaming else None)  # the chunk reader's thread

    def train_step(self, done: int) -> float:
        """One optimiser step after `done` (its micro-batches): the mean loss over them."""
        gas, device = self.args.gradient_accumulation_steps, self.acc.device
        total = 0.0
        for micro in range(gas):
            batch = self.data.batch(self.order, done * gas + micro, self.rank)
            x0 = self.standard.forward(torch.from_numpy(batch.latents).to(device))  # (B, k, d)
            model = self.loop.model
            if self.spec is not None:
                cond = torch.from_numpy(batch.conditions).long()  # (B,) or (B, L)
                null = torch.from_numpy(self.spec.null(1)).long()
                cond = drop_conditions(cond, null, self.args.condition_dropout, self.state.generator)
                model = ConditionedDenoiser(self.loop.model, cond.to(device))
            loss = self.loop.step(self.diffusion.loss, model, x0, self.state.generator)
            if self.acc.num_processes > 1:  # report the mean over every process's batch
                loss = self.acc.gather(loss.detach()[None]).mean()
            total += loss.item() / gas
        self.ema.step(self.core.parameters())
        self.state.step += 1
        return total

    def epoch(self, done: int) -> int:
        """The epochs that `done` optimiser steps have finished."""
        return done * self.args.gradient_accumulation_steps // self.order.per_epoch

    def after_step(self, done: int, loss: float, over: bool) -> bool:
        """After step `done`: the loss to the trackers; at an epoch's end (and the last step) the
        epoch's mean loss to metrics.jsonl; samples every save_samples_epochs. True when an
        epoch checkpoint is due (every save_model_epochs)."""
        self.state.losses.append(loss)
        lr = self.loop.lr
        self.acc.log({"loss": loss, "lr": lr}, step=done)
        epoch, new_epoch = self.epoch(done), self.epoch(done) > self.epoch(done - 1)
        if new_epoch or over:
            self.state.last_loss = float(np.mean(self.state.losses))
            if self.acc.is_main_process:
                _append_metrics(self.out, {"step": done, "epoch": epoch, "loss": self.state.last_loss,
                                           "lr": lr})
            self.state.losses = []
        if new_epoch and epoch % self.args.save_samples_epochs == 0 and self.acc.is_main_process:
            self.fd, self.sampled_at = self.save_samples(epoch), done
        return new_epoch and epoch % self.args.save_model_epochs == 0

    def meta(self) -> dict:
        mean, std = self.standard.mean, self.standard.std
        return {
            "format": RUN_FORMAT, "version": 1, "arch": self.args.arch,
            "latent_space": self.store.latent_space, "autoencoder": self.store.attrs.get("autoencoder"),
            "store": self.store.path, "latent_shape": [self.k, self.d],
            "stats_mean": mean.ravel().tolist(), "stats_std": std.ravel().tolist(),
            "objective": self.args.objective, "schedule": self.args.schedule,
            "self_condition": self.args.self_condition, "steps": self.state.step,
            "condition": self.spec.to_dict() if self.spec else None,
            "condition_dropout": self.args.condition_dropout if self.spec else None,
            "heldout_rows": self.held, "training": asdict(self.args),
        }


def train_diffusion(store_path: str | Path, out: str | Path, args: TrainArgs | None = None,
                    reporter: Reporter = SILENT) -> TrainResult:
    """Train a denoiser on the latents of a complete store; the run lands in `out`. A run
    that fails before its first checkpoint leaves no `out` folder behind that it created."""
    from ldlm.atomic import removed_on_failure

    with removed_on_failure(out, lambda run: bool(_checkpoints(run)) or not ranks().is_main):
        return _train_diffusion(store_path, out, args, reporter)


def _train_diffusion(store_path: str | Path, out: str | Path, args: TrainArgs | None,
                     reporter: Reporter) -> TrainResult:
    args = args or TrainArgs()
    args.check()
    out = Path(out)
    store = LatentStore.open(store_path)
    if args.resume is None and ((out / RUN_FILE).exists() or _checkpoints(out)):
        raise InputError(f"--out {str(out)!r} already holds a run; pass --resume to continue it or "
                         "choose another folder")
    ckpt = find_checkpoint(out, args.resume) if args.resume else None
    t = _Trainer(store, out, args, reporter)  # validates everything before RUN_DIR is made
    if not t.acc.is_main_process:  # under a launch, the main process reports for all
        reporter = t.reporter = SILENT
    out.mkdir(parents=True, exist_ok=True)
    if t.acc.is_main_process:
        remove_leftovers(out)  # hidden temporary folders of a killed run
        _check_run_files(out, reporter)
    if ckpt is not None:
        t.load_checkpoint(ckpt)
        reporter.log(f"resumed from {ckpt} (step {t.state.step})")
        if note := t.loop.replan_note("here"):
            reporter.log(note)
    if t.acc.is_main_process and _has_tensorboard():
        t.acc.init_trackers("ldlm-train", config={k: v for k, v in asdict(args).items()
                                                  if isinstance(v, int | float | str | bool)})
    started = time.perf_counter()
    t.loop.run(t.steps(), reporter, start=t.state.step)  # a finished run that is resumed saves again
    if t.acc.is_main_process and t.sampled_at != t.state.step:
        t.fd = t.save_samples(t.epoch(t.state.step))
    meta = t.meta()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    if t.acc.is_main_process:
        t.ema.store(t.core.parameters())
        t.ema.copy_to(t.core.parameters())
        try:
            save_run(out, t.core, t.noise, meta)
        finally:
            t.ema.restore(t.core.parameters())
    t.acc.wait_for_everyone()
    t.acc.end_training()
    if args.push_to_hub and t.acc.is_main_process:
        url = push_to_hub(out, args.hub_model_id or out.resolve().name, meta)
        reporter.log(f"pushed to {url}")
    return TrainResult(out, t.state.step, t.state.last_loss, t.fd, t.last_fd_floor)


__all__ = ["CHECKPOINT_FILE", "TrainArgs", "TrainResult", "find_checkpoint", "train_diffusion"]
