"""The training loop every ldlm trainer runs on (autoencoder, denoiser, decoder adaptation,
condition classifier, and the GPT-2 baseline of benchmarks/ar_comparison.py): diffusers'
accelerate core, in small pieces, and the one loop that drives them.

    loop = TrainingLoop(model, LoopArgs(...), params)        # accelerate prepare, AdamW, LR schedule
    loop.load_checkpoint(ckpt)                               # resume: weights, optimiser, schedule, RNG
    done = loop.run(Steps(step, "train", ...), reporter, start)   # the loop, below
    loss = loop.step(loss_fn, *inputs)                       # in `step`: accumulate, autocast, backward,
                                                             # clip, optimiser step (one micro-batch)
    loop.save_checkpoint(out, step, marker, record)          # atomic checkpoint-<step>/ (ldlm.checkpoints)

A trainer says what one optimiser step is and what it does around the steps (`Steps`: its
batches and loss, its logs and samples, how it writes a checkpoint); `TrainingLoop.run` owns the
loop: the step cap and the time budget's plan, the progress bar, the checkpoint cadence and the
checkpoint of the last step, the divergence check (a loss that is not finite stops the run
before any weight moves), and where a resumed run starts. No trainer keeps a loop of its own.

A checkpoint holds no pickled code: accelerate saves the model (safetensors), the optimiser
and its RNG files (loaded with `weights_only=True`); the objects a trainer registers (the LR
schedule, EMA weights, step state) are written here as JSON plus safetensors, never through
accelerate's custom-state pickles, which it loads with `weights_only=False`.

The learning rate warms up linearly, then follows a cosine (to 0, or to a floor) over the
planned steps: the values of diffusers' and transformers' cosine schedules, in one small
class that can also be re-planned (`CosineSchedule`); other diffusers schedules by name.

A time budget (`LoopArgs.max_seconds`, on the wall clock or this process's CPU clock) plans
the number of steps from the measured pace and revises it every `PLAN_EVERY` steps, so the
run ends on a whole step near the budget with its cosine finished; the time spent travels in
the checkpoints, so a resumed run continues the same budget. EMA, data order and what a
checkpoint must match stay with each trainer; how long it runs comes from its options'
`ldlm.budget.BudgetArgs`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ldlm.budget import PLAN_EVERY, Clock
from ldlm.checkpoints import list_checkpoints, write_checkpoint
from ldlm.distributed import cpu_only, ranks
from ldlm.errors import RuntimeFailure, first_line
from ldlm.progress import SILENT, Reporter


@dataclass
class LoopArgs:
    """How a trainer optimises; each trainer maps its own flags onto these."""

    max_steps: int  # optimiser steps in all (the schedule's length)
    learning_rate: float  # peak learning rate (AdamW)
    warmup_steps: int = 0  # linear warmup steps
    schedule: str = "cosine"  # a diffusers.optimization name, or "cosine-floor" (to min_lr_ratio)
    min_lr_ratio: float = 0.0  # cosine-floor: the last learning rate / the peak
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    max_grad_norm: float | None = 1.0  # gradient clipping (None: none)
    gradient_accumulation_steps: int = 1  # micro-batches per optimiser step
    mixed_precision: str = "no"  # fp16 | bf16 | no (accelerate)
    cpu: bool = False  # force the CPU even where a GPU is (a trainer given --device cpu)
    max_seconds: float | None = None  # time budget: stop near it, the schedule planned to fit
    clock: str = "wall"  # the budget's clock: "wall" or "cpu" (this process's CPU time)


class CosineSchedule:
    """The learning-rate factor at a step: linear warmup over `warmup` steps, then a cosine from
    1 to `min_ratio` over the rest of `total` (transformers' cosine with a floor; diffusers'
    cosine at floor 0, value for value). `replan(step, total)` lays the rest of the cosine over
    a new total from the point it has reached, so the rate never jumps. Its fields are its
    state: torch's LambdaLR checkpoints them."""

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0):
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio
        self.anchor_step, self.anchor_progress = warmup, 0.0  # where the current plan starts

    def progress(self, step: int) -> float:
        """How far along the cosine `step` is, 0 to 1."""
        span = max(1, self.total - self.anchor_step)
        done = max(0, step - self.anchor_step) / span
        return min(1.0, self.anchor_progress + (1 - self.anchor_progress) * done)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress(step)))
        return self.min_ratio + (1 - self.min_ratio) * cosine

    def replan(self, step: int, total: int) -> None:
        if step > self.anchor_step:
            self.anchor_progress, self.anchor_step = self.progress(step), step
        self.total = total


def release_accelerator_state(mixed_precision: str) -> None:
    """Let a second run in one process use another precision. accelerate keeps one global
    state and refuses to change it, and has no public call to release it (huggingface/
    accelerate#2463); the earlier run is over by now, so its state is reset here, the only
    place ldlm touches accelerate's internals."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state()


def lr_schedule(optimizer, args: LoopArgs):
    """The learning-rate schedule of `args`, stepped once per optimiser step: "cosine" and
    "cosine-floor" are a `CosineSchedule` (re-plannable), any other name diffusers' schedule."""
    if args.schedule in ("cosine", "cosine-floor"):
        floor = args.min_lr_ratio if args.schedule == "cosine-floor" else 0.0
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, CosineSchedule(args.warmup_steps, args.max_steps, floor))
    from diffusers.optimization import get_scheduler

    return get_scheduler(args.schedule, optimizer, num_warmup_steps=args.warmup_steps,
                         num_training_steps=args.max_steps)


@dataclass
class Steps:
    """One trainer's part of a run that `TrainingLoop.run` drives: what an optimiser step is, and
    what the trainer does around the steps; the loop itself is the driver's."""

    step: Callable[[int], float]  # one optimiser step after `done` steps (`TrainingLoop.step` per
    # micro-batch): the loss it reports
    task: str  # the progress task ("train", "train-autoencoder", ...)
    unit: str = "step"  # the progress unit
    shown: Callable[[float], object] = float  # the loss as the progress bar shows it
    diverged: Callable[[float, int], Exception] | None = None  # the error for a loss that is not
    # finite in the step after `done` (None: "loss became X at step N; lower the learning rate")
    after_step: Callable[[int, float, bool], bool | None] | None = None  # (done, loss, over) after
    # each step: the trainer's logs, samples and epochs; True asks for a checkpoint now
    checkpoint: Callable[[int], object] | None = None  # writes checkpoint-<done> on every process
    # (None: the run keeps no checkpoints)
    checkpointing_steps: int | None = None  # a checkpoint every N steps, besides the last step's
    close: Callable[[], None] | None = None  # once the steps end, however they end (a data reader)


class TrainingLoop:
    """accelerate's Accelerator around one model, its AdamW optimiser and LR schedule.

    `params`: the parameters (or torch parameter groups) to train; default every parameter.
    The schedule is stepped once per optimiser step whatever the number of processes (it is
    registered for checkpointing, not prepared: accelerate's prepared scheduler steps once per
    process, so a resume on another process count would shift it).
    """

    def __init__(self, model: torch.nn.Module, args: LoopArgs, params=None, **accelerator_options):
        from accelerate import Accelerator

        release_accelerator_state(args.mixed_precision)
        self.args = args
        self.acc = Accelerator(cpu=args.cpu or cpu_only(), mixed_precision=args.mixed_precision,
                               gradient_accumulation_steps=args.gradient_accumulation_steps,
                               **accelerator_options)
        groups = list(model.parameters()) if params is None else list(params)
        self.params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
        opt = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=args.weight_decay)
        self.schedule = lr_schedule(opt, args)
        self.model, self.opt = self.acc.prepare(model, opt)
        self.core = self.acc.unwrap_model(self.model)
        self.clock = Clock(args.clock)  # the time budget's clock, over resumes
        self.objects: list = [self.schedule, self.clock]  # saved beside accelerate's state
        self.planned = args.max_steps  # the steps the run will take (a budget revises it)
        self.replanned_from: int | None = None  # a resume's old plan, when it was changed
        self._pace_from: tuple[int, float] | None = None  # (step, seconds) the pace is measured from
        self.budget_warning: str | None = None  # set when the budget ran out before its pace was known
        self.done = 0  # optimiser steps done (`run` counts them)
        self._diverged: Callable[[float, int], Exception] = self._loss_became

    @property
    def cosine(self) -> CosineSchedule | None:
        """The schedule's re-plannable cosine, if it has one."""
        fn = getattr(self.schedule, "lr_lambdas", [None])[0]
        return fn if isinstance(fn, CosineSchedule) else None

    def run(self, steps: Steps, reporter: Reporter = SILENT, start: int = 0, saved: int | None = None) -> int:
        """Take optimiser steps from `start` (a resumed run's steps) until the plan is done: the
        step cap, or the time budget's revised plan. After each step: the plan, the progress bar
        (its total revised under a budget), `steps.after_step`, then a checkpoint when one is due.
        At the end, the budget's warning if it has one, and a checkpoint of the last step unless
        there is one already (`saved`: the step of a checkpoint the run already has, such as the
        one it resumed from). Returns the steps done in all."""
        budget = self.args.max_seconds is not None
        reporter.start(steps.task, total=None if budget else self.planned, unit=steps.unit)
        reporter.advance(start)
        self.done, self._diverged = start, steps.diverged or self._loss_became
        every = steps.checkpointing_steps
        try:
            while self.done < self.planned:
                loss = steps.step(self.done)
                self.done += 1
                over = self.plan(self.done)
                if budget:
                    reporter.set_total(self.planned)
                reporter.advance(1, loss=steps.shown(loss))
                due = steps.after_step(self.done, loss, over) if steps.after_step else False
                if steps.checkpoint is not None and (due or (every and self.done % every == 0)):
                    steps.checkpoint(self.done)
                    saved = self.done
        finally:
            reporter.stop()
            if steps.close is not None:
                steps.close()
        if self.budget_warning:
            reporter.log(self.budget_warning)
        if steps.checkpoint is not None and saved != self.done:
            steps.checkpoint(self.done)
        return self.done

    def _loss_became(self, value: float, done: int) -> RuntimeFailure:
        return RuntimeFailure(f"loss became {value} at step {done + 1}; lower the learning rate "
                              f"({self.args.learning_rate})")

    def replan_note(self, at: str) -> str | None:
        """After `load_checkpoint`: the line that says the checkpoint's cosine was re-laid over
        another --max-steps from `at` ("here", "step 40"), or None when it was not."""
        if self.replanned_from is None:
            return None
        return (f"the checkpoint's learning-rate schedule was planned for {self.replanned_from} steps; "
                f"the rest of its cosine is laid over {self.planned} steps from {at}")

    def plan(self, done: int) -> bool:
        """Call after each optimiser step (`done` steps in all); True when the run is over.

        Under a time budget, every PLAN_EVERY steps the steps that fit the rest of it are
        estimated from the pace since this process's first step, the cosine is re-laid over
        them, and the main process's plan is the one every process follows."""
        if self.args.max_seconds is not None:
            spent = self.clock.spent()
            if self._pace_from is None:
                self._pace_from = (done, spent)  # the first step pays for warm-up: not counted
            elif done % PLAN_EVERY == 0 and done - self._pace_from[0] >= 3:
                pace = (spent - self._pace_from[1]) / (done - self._pace_from[0])
                if self.budget_warning is None and spent >= self.args.max_seconds:
                    self.budget_warning = _overrun(self.args.max_seconds, done, spent)
                fits = done + max(0, int((self.args.max_seconds - spent) / max(pace, 1e-9)))
                self._set_plan(_agree(min(fits, self.args.max_steps)))
        return done >= self.planned

    def _set_plan(self, total: int) -> None:
        if total != self.planned and self.cosine is not None:
            self.cosine.replan(self.schedule.last_epoch, total)
        self.planned = total

    @property
    def device(self) -> torch.device:
        return self.acc.device

    @property
    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def register(self, *objects) -> None:
        """Objects with state_dict / load_state_dict that checkpoints keep (EMA, step state):
        their states must be nests of dicts, lists, numbers, strings and tensors."""
        self.objects.extend(objects)

    def step(self, loss_fn: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """One micro-batch: loss_fn(*args, **kwargs) under autocast, backward, and on the last
        micro-batch of an optimiser step: clip, optimiser step, schedule step. A loss that is
        not finite raises the run's `Steps.diverged` error before any weight moves."""
        with self.acc.accumulate(self.model):
            with self.acc.autocast():
                loss = loss_fn(*args, **kwargs)
            if not torch.isfinite(loss):
                raise self._diverged(loss.item(), self.done)
            self.acc.backward(loss)
            if self.acc.sync_gradients and self.args.max_grad_norm is not None:
                self.acc.clip_grad_norm_(self.params, self.args.max_grad_norm)
            self.opt.step()
            if self.acc.sync_gradients:
                self.schedule.step()
            self.opt.zero_grad(set_to_none=True)
        return loss

    def save_checkpoint(self, out: Path, step: int, marker: str, record: dict, keep: int,
                        extra: Callable[[Path], None] | None = None) -> Path:
        """Write `out/checkpoint-<step>` atomically: accelerate's state (weights, optimiser,
        schedule, registered objects, every RNG), then `extra(tmp)`, then `marker`."""
        def fill(tmp: Path) -> None:
            self.acc.save_state(str(tmp))
            if self.acc.is_main_process:
                for i, obj in enumerate(self.objects):
                    save_state_dict(obj.state_dict(), tmp / f"{STATE_PREFIX}{i}")
            if extra is not None:
                extra(tmp)

        return write_checkpoint(out, step, marker, record, fill, keep, ranks())

    def load_checkpoint(self, ckpt: Path) -> None:
        """Restore what `save_checkpoint` wrote; a file that is damaged, or a pickle that would
        run code, is a one-line RuntimeFailure."""
        from accelerate.utils import load as safe_load

        rng = Path(ckpt) / f"random_states_{self.acc.process_index}.pkl"
        try:
            if rng.is_file():  # accelerate ignores an RNG file it cannot read: a resume unlike the run
                safe_load(rng)  # weights_only: a damaged file or one carrying code is refused here
            self.acc.load_state(str(ckpt))
        except Exception as exc:  # noqa: BLE001 - torch, safetensors and pickle errors alike
            raise RuntimeFailure(f"checkpoint {str(ckpt)!r} cannot be loaded ({type(exc).__name__}: "
                                 f"{first_line(exc, 120)}); resume from another checkpoint-<step> "
                                 "with --resume-from, or start again with --overwrite") from exc
        for i, obj in enumerate(self.objects):
            stem = Path(ckpt) / f"{STATE_PREFIX}{i}"
            state = load_state_dict(stem)
            problem = state_mismatch(obj.state_dict(), state)
            if problem:  # what load_state_dict would take silently and a later step trip over
                raise RuntimeFailure(_damaged_state(stem, ValueError(problem)))
            try:
                obj.load_state_dict(state)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
                # a hand-edited or damaged state ({"spent": "abc"}, a list for an object)
                raise RuntimeFailure(_damaged_state(stem, exc)) from exc
        cosine = self.cosine
        if cosine is not None and self.args.max_seconds is not None:
            self.planned = min(cosine.total, self.args.max_steps)  # until the pace is measured again
        elif cosine is not None and cosine.total != self.args.max_steps:  # another --max-steps
            self.replanned_from = cosine.total
            cosine.replan(self.schedule.last_epoch, self.args.max_steps)


def _overrun(budget: float, done: int, spent: float) -> str:
    """The warning for a time budget that was spent before its pace could be measured: a budget
    runs at least PLAN_EVERY steps (the pace is measured on them), so it cannot end sooner."""
    enough = math.ceil(10 * spent / 60) / 10  # minutes, rounded up to a tenth
    return (f"warning: --max-minutes {budget / 60:g} ({budget:.3g} s) was spent before the time budget "
            f"could measure the pace: a budget runs at least {PLAN_EVERY} steps, and it was spent at step "
            f"{done} ({spent:.1f} s in all); give --max-minutes {enough:g} or more, or --max-steps for a "
            "shorter run")


def _agree(value: int) -> int:
    """The main process's `value`, on every process of a launch (alone: `value`)."""
    group = ranks()
    if group.count == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([value], from_process=0)[0])


STATE_PREFIX = "ldlm_state_"  # ldlm_state_<i>.json (+ .safetensors): registered object i


def save_state_dict(state, stem: Path) -> None:
    """Write a state dict as `stem.json` (its structure, numbers and strings) and
    `stem.safetensors` (its tensors, named by their place in the structure)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}

    def encode(x, where: str):
        if isinstance(x, torch.Tensor):
            tensors[where] = x.detach().cpu().contiguous()
            return {"__tensor__": where}
        if isinstance(x, dict):
            return {"__dict__": [[encode(k, f"{where}.k{i}"), encode(v, f"{where}.{i}")]
                                 for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, list | tuple):
            return [encode(v, f"{where}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, bool | int | float | str):
            return x
        raise TypeError(f"a checkpointed state holds a {type(x).__name__} at {where}; only dicts, "
                        "lists, numbers, strings and tensors are saved")

    structure = encode(state, "s")
    stem.with_suffix(".json").write_text(json.dumps(structure))
    save_file(tensors, str(stem.with_suffix(".safetensors")))


def load_state_dict(stem: Path):
    """Read what `save_state_dict` wrote (no code runs: JSON and safetensors only)."""
    from safetensors.torch import load_file

    try:
        structure = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        tensors = load_file(str(stem.with_suffix(".safetensors")))
    except (OSError, ValueError, RecursionError) as exc:
        raise RuntimeFailure(_damaged_state(stem, exc, "is missing or damaged")) from exc

    def decode(x):
        if isinstance(x, dict) and "__tensor__" in x:
            return tensors[x["__tensor__"]]
        if isinstance(x, dict) and "__dict__" in x:
            return {decode(k): decode(v) for k, v in x["__dict__"]}
        if isinstance(x, list):
            return [decode(v) for v in x]
        return x

    try:
        return decode(structure)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:  # a structure not as saved
        raise RuntimeFailure(_damaged_state(stem, exc)) from exc


def state_mismatch(fresh, saved, where: str = "state") -> str | None:
    """Where a saved state dict differs in structure or type from the state of a fresh object
    of the same kind (a hand-edited or foreign state), else None. Numbers may change value but
    stay numbers, tensors keep their dtype and shape, dicts keep their keys; a list that is empty
    when fresh (losses so far) may hold any numbers."""
    def kind(x) -> str:
        return "number" if isinstance(x, int | float) and not isinstance(x, bool) else type(x).__name__

    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.dtype != fresh.dtype or saved.shape != fresh.shape:
            shown = (f"a {saved.dtype} tensor of shape {list(saved.shape)}" if isinstance(saved, torch.Tensor)
                     else f"a {kind(saved)}")
            return f"{where} is {shown}, not a {fresh.dtype} tensor of shape {list(fresh.shape)}"
        return None
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{where} is a {kind(saved)}, not a mapping"
        for key, value in fresh.items():
            if key not in saved:
                return f"{where} lacks {key!r}"
            problem = state_mismatch(value, saved[key], f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(fresh, list | tuple):
        if not isinstance(saved, list | tuple):
            return f"{where} is a {kind(saved)}, not a list"
        if not fresh:
            bad = next((i for i, v in enumerate(saved) if kind(v) != "number"), None)
            return None if bad is None else f"{where}[{bad}] is a {kind(saved[bad])}, not a number"
        if len(saved) != len(fresh):
            return f"{where} holds {len(saved)} entries, not {len(fresh)}"
        for i, (a, b) in enumerate(zip(fresh, saved, strict=True)):
            problem = state_mismatch(a, b, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if fresh is None:  # set later (the last loss): a number or still None
        ok = saved is None or kind(saved) == "number"
        return None if ok else f"{where} is a {kind(saved)}, not a number"
    if kind(saved) != kind(fresh):
        return f"{where} is {saved!r:.40}, not a {kind(fresh)}"
    return None


def _damaged_state(stem: Path, exc: BaseException, what: str = "is damaged") -> str:
    """The one line for a checkpoint state file that cannot be restored."""
    return (f"checkpoint state {str(stem.with_suffix('.json'))!r} {what} ({type(exc).__name__}: "
            f"{first_line(exc, 100)}); resume from another checkpoint-<step> with --resume-from, or "
            "start again in a new --out folder")


def diverged(loss: float, step: int, out: Path, marker: str, learning_rate: float) -> RuntimeFailure:
    """The one-line error for a loss that became NaN or inf, naming the last good checkpoint."""
    found = list_checkpoints(out, marker)
    keep = f"the last good checkpoint is {str(found[-1])!r}" if found else "no checkpoint yet"
    return RuntimeFailure(f"loss became {loss} at step {step}; {keep}; lower --learning-rate "
                          f"({learning_rate}) or use --mixed-precision no")


__all__ = ["CosineSchedule", "LoopArgs", "Steps", "TrainingLoop", "diverged", "lr_schedule",
           "release_accelerator_state"]
