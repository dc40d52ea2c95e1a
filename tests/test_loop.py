"""The one training loop, `TrainingLoop.run`: a trainer that is none of ldlm's (a toy regression,
here) runs on it with no loop of its own, and gets the step cap, checkpoints, an exact resume,
the time budget and the divergence check from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ldlm.budget import CLOCKS, UNCAPPED
from ldlm.checkpoints import list_checkpoints
from ldlm.errors import RuntimeFailure
from ldlm.loop import LoopArgs, Steps, TrainingLoop
from ldlm.progress import Reporter

MARKER = "toy_checkpoint.json"
ROOT = Path(__file__).resolve().parents[1]


class Toy:
    """A fifth trainer: y = sum(x) learnt by a linear layer, each step's batch drawn from the step
    number (so a resumed run sees the same data), checkpoints in `out`. It says what a step is and
    how a checkpoint is written; it keeps no loop."""

    def __init__(self, out: Path, **loop_args):
        torch.manual_seed(0)
        self.out = out
        self.loop = TrainingLoop(torch.nn.Linear(4, 1), LoopArgs(**{
            "max_steps": 12, "learning_rate": 0.05, "warmup_steps": 2, "cpu": True, **loop_args}))
        self.seen: list[tuple[int, bool]] = []  # (done, over) after each step

    def step(self, done: int) -> float:
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(done))  # (B, 4)
        return self.loop.step(lambda: torch.nn.functional.mse_loss(self.loop.model(x), x.sum(1, True))).item()

    def after_step(self, done: int, loss: float, over: bool) -> None:
        self.seen.append((done, over))

    def checkpoint(self, done: int) -> None:
        self.loop.save_checkpoint(self.out, done, MARKER, {"toy": 1}, keep=3)

    def steps(self, **overrides) -> Steps:
        return Steps(**{"step": self.step, "task": "toy", "after_step": self.after_step,
                        "checkpoint": self.checkpoint, "checkpointing_steps": 4, **overrides})

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.loop.core.parameters()]


class Record(Reporter):
    """Keeps every progress call; interrupts after `stop_after` steps, as a kill would."""

    def __init__(self, stop_after: int | None = None):
        self.calls: list[tuple] = []
        self.stop_after = stop_after

    def start(self, description, total=None, unit="it"):
        self.calls.append(("start", description, total, unit))

    def advance(self, n=1, **fields):
        self.calls.append(("advance", n, *fields))
        steps = sum(c[1] for c in self.calls if c[0] == "advance")
        if self.stop_after is not None and steps > self.stop_after:
            raise KeyboardInterrupt

    def set_total(self, total):
        self.calls.append(("total", total))

    def stop(self):
        self.calls.append(("stop",))

    def log(self, message):
        self.calls.append(("log", message))


def _names(folder: Path) -> list[str]:
    return [p.name for p in list_checkpoints(folder, MARKER)]


def test_a_toy_trainer_runs_on_the_loop_to_its_step_cap_and_resumes_exactly(tmp_path):
    whole, shown = Toy(tmp_path / "whole"), Record()
    assert whole.loop.run(whole.steps(), shown) == 12
    assert _names(tmp_path / "whole") == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]
    assert whole.seen == [(d, d == 12) for d in range(1, 13)]  # `over` at the last step only
    assert shown.calls[:2] == [("start", "toy", 12, "step"), ("advance", 0)]
    assert shown.calls.count(("advance", 1, "loss")) == 12 and shown.calls[-1] == ("stop",)

    cut = Toy(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        cut.loop.run(cut.steps(), Record(stop_after=6))
    assert _names(tmp_path / "cut") == ["checkpoint-4"]  # the driver stopped mid-run, as a kill would

    again = Toy(tmp_path / "cut")
    again.loop.load_checkpoint(tmp_path / "cut" / "checkpoint-4")
    resumed = Record()
    assert again.loop.run(again.steps(), resumed, start=4, saved=4) == 12
    assert resumed.calls[1] == ("advance", 4)  # the progress starts where the checkpoint was
    for a, b in zip(whole.weights(), again.weights(), strict=True):
        torch.testing.assert_close(a, b)
    assert again.loop.lr == pytest.approx(whole.loop.lr)

    done = Toy(tmp_path / "cut")  # resumed at its end: no step, no new checkpoint
    done.loop.load_checkpoint(tmp_path / "cut" / "checkpoint-12")
    assert done.loop.run(done.steps(), start=12, saved=12) == 12 and done.seen == []


def test_the_last_step_is_always_checkpointed(tmp_path):
    toy = Toy(tmp_path / "run", max_steps=6)
    assert toy.loop.run(toy.steps(checkpointing_steps=None)) == 6
    assert _names(tmp_path / "run") == ["checkpoint-6"]
    asked = Toy(tmp_path / "asked", max_steps=6)  # after_step asks for one (an epoch's end)
    assert asked.loop.run(asked.steps(checkpointing_steps=None, after_step=lambda d, loss, o: d == 3)) == 6
    assert _names(tmp_path / "asked") == ["checkpoint-3", "checkpoint-6"]


class FakeClock:
    """A budget clock that advances one second each time it is read."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_toy_trainer_gets_the_time_budget_and_keeps_it_over_a_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(CLOCKS, "wall", FakeClock())  # about one second per step (read once a step)
    budget = dict(max_steps=UNCAPPED, max_seconds=40.0, clock="wall", warmup_steps=0)
    toy, shown = Toy(tmp_path / "run", **budget), Record()
    steps = toy.loop.run(toy.steps(checkpointing_steps=10), shown)
    assert 35 <= steps <= 41, steps  # planned from the pace to end near the budget
    assert shown.calls[0] == ("start", "toy", None, "step")  # a budget's total is not known at first
    assert ("total", steps) in shown.calls  # then revised as the plan is
    assert toy.loop.lr < 0.05 * 0.05  # the cosine was laid over the budget's steps: it ended near 0
    assert _names(tmp_path / "run")[-1] == f"checkpoint-{steps}"

    cut = Toy(tmp_path / "cut", **budget)
    with pytest.raises(KeyboardInterrupt):
        cut.loop.run(cut.steps(checkpointing_steps=10), Record(stop_after=25))
    again = Toy(tmp_path / "cut", **budget)
    again.loop.load_checkpoint(tmp_path / "cut" / "checkpoint-20")  # ~20 of the 40 seconds spent
    assert 35 <= again.loop.run(again.steps(checkpointing_steps=10), start=20, saved=20) <= 41


def test_a_toy_trainer_budget_spent_before_its_pace_is_known_is_warned(tmp_path, monkeypatch):
    monkeypatch.setitem(CLOCKS, "wall", FakeClock())
    toy, shown = Toy(tmp_path / "run", max_steps=UNCAPPED, max_seconds=3.0), Record()
    assert toy.loop.run(toy.steps(), shown) == 10  # the pace is measured on 10 steps
    assert any(c[0] == "log" and c[1].startswith("warning: --max-minutes") for c in shown.calls)


def test_a_loss_that_is_not_finite_stops_the_toy_before_any_weight_moves(tmp_path):
    toy, closed = Toy(tmp_path / "run"), []
    real = toy.step

    def step(done: int) -> float:  # the third step's loss is NaN
        nan = torch.tensor(float("nan"), requires_grad=True)
        return real(done) if done < 2 else toy.loop.step(lambda: nan)

    with pytest.raises(RuntimeFailure, match=r"loss became nan at step 3; lower the learning rate \(0.05\)"):
        toy.loop.run(toy.steps(step=step, close=lambda: closed.append(1)))
    assert closed == [1] and _names(tmp_path / "run") == []  # no checkpoint of a diverged step

    told = Toy(tmp_path / "told")
    before = told.weights()
    with pytest.raises(ValueError, match="toy diverged after 0"):
        told.loop.run(told.steps(step=lambda done: told.loop.step(lambda: torch.tensor(float("inf"))),
                                 diverged=lambda value, done: ValueError(f"toy diverged after {done}")))
    for a, b in zip(before, told.weights(), strict=True):
        assert torch.equal(a, b)


def test_no_trainer_keeps_a_loop_of_its_own():
    """Every module that makes a TrainingLoop hands it to `run`; none plans its steps itself."""
    sources = [*ROOT.joinpath("ldlm").rglob("*.py"), *ROOT.joinpath("benchmarks").glob("*.py")]
    trainers = [p for p in sources if "TrainingLoop(" in p.read_text(encoding="utf-8")
                and p.name != "loop.py"]
    assert len(trainers) == 5, trainers  # ldlm train, train-autoencoder, adapt-decoder, the classifier, GPT-2
    for path in trainers:
        text = path.read_text(encoding="utf-8")
        assert re.search(r"\.run\(", text) and ".plan(" not in text, path
        assert not re.search(r"while .*\.planned", text), path
