"""Time budgets (--max-minutes): the run ends near the budget with its cosine finished, a
resume continues the budget, and a resume with another --max-steps re-lays the cosine from
where it is instead of jumping."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ldlm.budget import Clock, check_budget
from ldlm.errors import InputError
from ldlm.loop import CosineSchedule, load_state_dict
from ldlm.train import train_diffusion
from tests.test_train_sample import StopAt, args, fake_store  # noqa: F401 - the fixture

PEAK = 1e-3


def _clock_spent(ckpt) -> float:
    """Seconds the checkpoint's budget clock had spent (ldlm_state_1: the loop's Clock)."""
    return load_state_dict(ckpt / "ldlm_state_1")["spent"]


def _lrs(run) -> list[float]:
    return [r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in r]


def test_cosine_schedule_matches_the_libraries_and_replans_without_a_jump():
    from diffusers.optimization import get_scheduler
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    floor = get_cosine_with_min_lr_schedule_with_warmup(torch.optim.SGD([p], lr=1.0), 10, 100,
                                                        min_lr_rate=0.1).lr_lambdas[0]
    plain = get_scheduler("cosine", torch.optim.SGD([p], lr=1.0), num_warmup_steps=10,
                          num_training_steps=100).lr_lambdas[0]
    ours_floor, ours_plain = CosineSchedule(10, 100, 0.1), CosineSchedule(10, 100)
    for step in range(101):
        assert ours_floor(step) == pytest.approx(floor(step), abs=1e-12)
        assert ours_plain(step) == pytest.approx(plain(step), abs=1e-12)

    s = CosineSchedule(10, 100, 0.1)
    before = s(60)
    s.replan(60, 300)  # three times the steps: the same value now, a slower descent after
    assert s(60) == pytest.approx(before) and s(61) < before
    assert s(61) - s(60) > CosineSchedule(10, 100, 0.1)(61) - before
    assert s(300) == pytest.approx(0.1) and s(400) == pytest.approx(0.1)
    s.replan(200, 150)  # fewer steps than done: the floor from here
    assert s(200) == pytest.approx(s.min_ratio + (1 - s.min_ratio) * 0.5 * (1 + math.cos(
        math.pi * s.anchor_progress)))


@pytest.mark.parametrize("minutes,clock", [(0.0, "wall"), (-1.0, "cpu"), (float("nan"), "wall"),
                                           (float("inf"), "wall"), (1.0, "sundial")])
def test_bad_budgets_are_refused(minutes, clock):
    with pytest.raises(InputError, match="--max-minutes|--budget-clock"):
        check_budget(minutes, clock)


def test_clock_carries_spent_time_over_a_resume():
    a = Clock("cpu")
    sum(i * i for i in range(200_000))
    state = a.state_dict()
    b = Clock("cpu")
    b.load_state_dict(state)
    assert state["spent"] > 0 and b.spent() >= state["spent"]


def test_denoiser_budget_ends_near_it_with_the_cosine_finished(fake_store, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    budget = 2.0  # CPU seconds: a busy machine does not change them
    result = train_diffusion(fake_store, run, args(max_minutes=budget / 60, budget_clock="cpu",
                                                   learning_rate=PEAK, lr_warmup_steps=5))
    spent = _clock_spent(run / f"checkpoint-{result.steps}")
    assert result.steps > 3 * 10  # several plans were made
    assert 0.85 * budget <= spent <= 1.15 * budget, spent
    assert _lrs(run)[-1] < 0.05 * PEAK  # the cosine was laid out to end with the budget
    meta = json.loads((run / "ldlm_run.json").read_text())
    assert meta["training"]["max_minutes"] == pytest.approx(budget / 60)


def test_an_interrupted_budget_run_resumes_on_the_same_budget(fake_store, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    budget = 2.0
    kw = dict(max_minutes=budget / 60, budget_clock="cpu", learning_rate=PEAK, checkpointing_steps=20)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(fake_store, run, args(**kw), reporter=StopAt(45))
    first = _clock_spent(run / "checkpoint-40")
    assert first < 0.9 * budget
    result = train_diffusion(fake_store, run, args(**kw, resume="latest"))
    spent = _clock_spent(run / f"checkpoint-{result.steps}")
    assert result.steps > 40 and 0.85 * budget <= spent <= 1.15 * budget, (result.steps, spent)


def test_resume_with_other_max_steps_relays_the_cosine(fake_store, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    kw = dict(learning_rate=PEAK, lr_warmup_steps=2, checkpointing_steps=10)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(fake_store, run, args(**kw, max_steps=40), reporter=StopAt(15))
    planned = CosineSchedule(2, 40)
    logs = []

    class Log(StopAt):
        def log(self, message):
            logs.append(message)

    train_diffusion(fake_store, run, args(**kw, max_steps=80, resume="latest"), reporter=Log(10**6))
    assert any("planned for 40 steps" in m and "80 steps" in m for m in logs), logs
    relaid = CosineSchedule(2, 40)
    relaid.replan(10, 80)
    state = load_state_dict(run / "checkpoint-80" / "ldlm_state_0")  # the re-laid plan is saved
    assert state["lr_lambdas"][0]["total"] == 80 and state["lr_lambdas"][0]["anchor_step"] == 10
    # the learning rate of step 11 continues step 10's (the old plan would have been lower)
    assert relaid(10) == pytest.approx(planned(10)) and relaid(11) > planned(11)
    lrs = _lrs(run)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)  # the re-laid cosine ends at step 80
