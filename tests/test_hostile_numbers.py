"""Issue 31, the numbers half: numbers within what can be done, environment variables,
hold-outs that mean something, silent cuts. One test (or a few) per case of the review,
numbered as there (5, 6, 8, 10, 13, 16) and the misleading messages after them.

None of them reads a figure that a few training steps of a tiny model produce (those differ
across machines): they check exit codes, `Error:` lines, warnings, what is left on disk and
which rows are held out. Environment variables are tried on a real `python -m ldlm` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.cli import app
from ldlm.errors import InputError
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import one_line_error
from tests.test_classifier import _store

runner = CliRunner()
TINY_MLP = {"widths": [16, 8], "time_dim": 8}
FAST = dict(size="tiny", batch_size=8, lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2,
            save_samples_epochs=1000, save_model_epochs=1000)
TINY_AE = ["--size", "tiny", "--max-length", "24", "--latent-tokens", "2", "--latent-dim", "8",
           "--batch-size", "8", "--eval-rows", "0"]
LONG_TEXT = " ".join(["word"] * 2500)  # about 10,000 characters, far past a max length of 24 tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_ae, corpus_file):
    """tiny_ae's store and a 4-step run on it (a run whose autoencoder exists)."""
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    root = tmp_path_factory.mktemp("numbers")
    store = root / "store.zarr"
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, store, batch_size=8, chunk_rows=16)
    run = root / "run"
    train_diffusion(store, run, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), max_steps=4, **FAST))
    return {"root": root, "store": store, "run": run, "ae": Path(tiny_ae), "corpus": Path(corpus_file)}


def _python_ldlm(args: list, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
            **(env or {})}
    return subprocess.run([sys.executable, "-m", "ldlm", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=Path(__file__).resolve().parents[1])


def _error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.strip()]


# ----- 5: a text cut to the autoencoder's length says so, as `encode` does ----------------------
def test_sample_init_text_past_the_max_length_is_warned(tmp_path, world):
    args = ["sample", str(world["run"]), "--num-samples", "1", "--num-inference-steps", "4",
            "--strength", "0.5", "--scheduler", "ddim", "--device", "cpu"]
    r = runner.invoke(app, [*args, "--init-text", LONG_TEXT, "--init-text", "a short one",
                            "--out", str(tmp_path / "long.ldlm")])
    assert r.exit_code == 0, r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "1 of the texts" in warnings[0] and "truncated" in warnings[0], r.stderr
    r = runner.invoke(app, [*args, "--init-text", "a short one", "--out", str(tmp_path / "short.ldlm")])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


def test_interpolate_past_the_max_length_is_warned(world):
    r = runner.invoke(app, ["interpolate", LONG_TEXT, "a short one", "--autoencoder", str(world["ae"]),
                            "--steps", "2", "--max-new-tokens", "4", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    assert "1 of the two texts were longer than the autoencoder's max length" in r.stderr


# ----- 6: the classifier's held-out rows cover the classes; one class is warned -----------------
def _label_store(path: Path, labels: list[str]) -> str:
    """A store of fake latents labelled by `labels` (the classifier reads only texts and labels)."""
    texts = [f"a text about {label.lower()} number {i}" for i, label in enumerate(labels)]
    return _store(path, texts, labels, "label")


CLASSIFIER = ["--epochs", "1", "--batch-size", "64", "--min-count", "1", "--lm-order", "0"]


def test_classifier_holds_out_every_class_of_a_class_sorted_store(tmp_path, monkeypatch):
    import ldlm.classifier as classifier

    labels = [c for c in ("World", "Sports", "Business", "Tech") for _ in range(100)]  # sorted by class
    store = _label_store(tmp_path / "sorted.zarr", labels)
    seen = {}
    real = classifier._held_out_figures

    def spy(model, texts, cond):
        seen["held"] = [model.spec.labels[int(c)] for c in cond]
        return real(model, texts, cond)

    monkeypatch.setattr(classifier, "_held_out_figures", spy)
    r = runner.invoke(app, ["train-classifier", store, "--out", str(tmp_path / "clf"), *CLASSIFIER,
                            "--eval-rows", "20"])
    assert r.exit_code == 0, r.stderr
    assert "held-out accuracy on 20 rows" in r.stdout and "warning" not in r.stderr
    assert sorted(seen["held"]) == sorted(["World", "Sports", "Business", "Tech"] * 5)


def test_the_shared_holdout_is_stratified_and_spread():
    from ldlm.holdout import spaced_holdout

    periodic = np.array([i % 2 for i in range(400)])  # A, B, A, B: every 20th row is one class
    train, held = spaced_holdout(400, 20, periodic)
    assert len(held) == 20 and np.bincount(periodic[held]).tolist() == [10, 10]
    assert sorted(train + held) == list(range(400)) and spaced_holdout(400, 20, periodic) == (train, held)
    skewed = np.array([0] * 360 + [1] * 30 + [2] * 10)
    assert np.bincount(skewed[spaced_holdout(400, 20, skewed)[1]], minlength=3).tolist() == [18, 2, 0]
    assert spaced_holdout(100, 10) == spaced_holdout(100, 10, None)  # no labels: every step-th row
    assert spaced_holdout(100, 10)[1] == list(range(0, 100, 10))


def test_a_one_class_store_is_warned(tmp_path):
    store = _label_store(tmp_path / "one.zarr", ["Sports"] * 200)
    r = runner.invoke(app, ["train-classifier", store, "--out", str(tmp_path / "clf"), *CLASSIFIER])
    assert r.exit_code == 0, r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "same condition" in warnings[0] and "say nothing" in warnings[0]


# ----- 8: a budget smaller than the steps it needs says so ---------------------------------------
def _budget_warning(stderr: str) -> str:
    found = [x for x in stderr.splitlines() if x.startswith("warning: --max-minutes")]
    assert len(found) == 1, stderr
    return found[0]


def test_a_budget_below_the_minimum_steps_is_warned_train(tmp_path, world):
    r = runner.invoke(app, ["train", str(world["store"]), "--out", str(tmp_path / "run"), "--max-minutes",
                            "1e-6", "--size", "tiny", "--batch-size", "8", "--save-samples-epochs", "1000",
                            "--eval-samples", "4", "--eval-inference-steps", "2"])
    assert r.exit_code == 0, r.stderr
    line = _budget_warning(r.stderr)
    assert "1e-06" in line and "at least 10 steps" in line and "--max-steps" in line


def test_a_budget_below_the_minimum_steps_is_warned_autoencoder(tmp_path, world):
    r = runner.invoke(app, ["train-autoencoder", str(world["corpus"]), "--out", str(tmp_path / "ae"),
                            *TINY_AE, "--max-minutes", "1e-6"])
    assert r.exit_code == 0, r.stderr
    assert "at least 10 steps" in _budget_warning(r.stderr)


def test_a_budget_below_the_minimum_steps_is_warned_adapt(tmp_path, world):
    r = runner.invoke(app, ["adapt-decoder", str(world["run"]), "--out", str(tmp_path / "ad"),
                            "--max-minutes", "1e-6", "--batch-size", "8", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    assert "at least 10 steps" in _budget_warning(r.stderr)


def test_a_budget_that_fits_says_nothing(tmp_path, world):
    r = runner.invoke(app, ["train", str(world["store"]), "--out", str(tmp_path / "run"), "--max-minutes",
                            "10", "--max-steps", "3", "--size", "tiny", "--batch-size", "8",
                            "--save-samples-epochs", "1000", "--eval-samples", "4",
                            "--eval-inference-steps", "2"])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


# ----- 10: --max-length past what the model can hold is one line, before any work ---------------
@pytest.mark.parametrize("length", ["100000", "513"])
def test_max_length_past_the_limit_is_one_line(tmp_path, world, length):
    out = tmp_path / "ae"
    args = [a for a in TINY_AE if a not in ("--max-length", "24")]
    r = runner.invoke(app, ["train-autoencoder", str(world["corpus"]), "--out", str(out), *args,
                            "--max-length", length, "--max-steps", "2"])
    line = one_line_error(r, 2)
    assert f"--max-length {length}" in line and "512" in line and "leave it out" in line
    assert not out.exists()


# ----- 13: numbers no timer or integer can hold are refused before any work ----------------------
@pytest.mark.parametrize("argv", [
    ["train", "{store}", "--out", "{out}", "--max-minutes", "1e308"],
    ["train-autoencoder", "{corpus}", "--out", "{out}", "--max-minutes", "1e307"],
    ["adapt-decoder", "{run}", "--out", "{out}", "--max-minutes", "1e300"],
    ["train", "{store}", "--out", "{out}", "--max-steps", str(10**20)],
    ["sample", "{run}", "--out", "{out}", "--num-samples", str(10**20)],
])
def test_numbers_past_what_can_be_done_are_one_line(tmp_path, world, argv):
    out = tmp_path / "out"
    argv = [a.format(store=world["store"], corpus=world["corpus"], run=world["run"], out=out) for a in argv]
    line = one_line_error(runner.invoke(app, argv), 2)
    assert argv[-2] in line and (argv[-1] in line or f"{float(argv[-1]):g}" in line), line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_budget_check_bounds_the_minutes():
    from ldlm.budget import MAX_MINUTES, check_budget

    check_budget(MAX_MINUTES, "wall")
    with pytest.raises(InputError, match="more than a year"):
        check_budget(MAX_MINUTES * 2, "cpu")


# ----- 16: environment variables are parsed early, with one-line errors --------------------------
@pytest.mark.parametrize("name,value", [("LDLM_PROGRESS_SECONDS", "abc"), ("LDLM_PROGRESS_SECONDS", "-5"),
                                        ("LDLM_PROGRESS_SECONDS", "inf"), ("WORLD_SIZE", "abc")])
def test_bad_environment_variables_are_one_line_before_any_work(tmp_path, world, name, value):
    out = tmp_path / "x.ldlm"
    r = _python_ldlm(["sample", world["run"], "--num-samples", "1", "--num-inference-steps", "2",
                      "--device", "cpu", "--out", out], env={name: value})
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"Error: environment variable {name}={value!r}") and "unset it" in lines[0]
    assert not out.exists()


def test_an_empty_progress_interval_is_the_default(tmp_path, world):
    out = tmp_path / "x.ldlm"
    r = _python_ldlm(["sample", world["run"], "--num-samples", "1", "--num-inference-steps", "2",
                      "--device", "cpu", "--out", out], env={"LDLM_PROGRESS_SECONDS": ""})
    assert r.returncode == 0 and out.exists(), r.stderr


# ----- messages that misled ------------------------------------------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["train", "s.zarr", "--out", "r", "--budget-clock", "bogus"], ["--budget-clock", "'bogus'", "wall"]),
    (["train", "s.zarr", "--out", "r", "--max-steps", "abc"], ["--max-steps", "integer"]),
    (["train", "s.zarr"], ["Missing option '--out'"]),
    (["no-such-command"], ["No such command"]),
])
def test_usage_errors_are_one_line(argv, words):
    line = one_line_error(runner.invoke(app, argv), 2)
    assert all(w in line for w in words) and "--help" in line, line


def test_usage_errors_are_one_line_in_a_real_process():
    r = _python_ldlm(["train", "s.zarr", "--out", "r", "--budget-clock", "bogus"], timeout=60)
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    assert "╭" not in r.stderr and "Usage:" not in r.stderr


def test_a_corpus_of_one_text_is_warned(tmp_path):
    data = tmp_path / "same.txt"
    data.write_text("the same text here\n" * 40, encoding="utf-8")
    r = runner.invoke(app, ["train-autoencoder", str(data), "--out", str(tmp_path / "ae"), *TINY_AE,
                            "--max-steps", "2"])
    assert r.exit_code == 0, r.stderr
    assert "warning: all 40 texts are the same text" in r.stderr


def test_a_store_of_one_latent_is_warned(tmp_path):
    store = LatentStore.create(str(tmp_path / "same.zarr"), rows=40, latent_shape=(4, 16), chunk_rows=16,
                               attributes={"latent_space": "fake-space", "autoencoder": "/no/ae"})
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, np.ones((b - a, 4, 16), "f4"), ["t"] * (b - a), np.zeros(b - a))
    store.finalize()
    r = runner.invoke(app, ["train", str(tmp_path / "same.zarr"), "--out", str(tmp_path / "run"),
                            "--max-steps", "2", "--size", "tiny", "--batch-size", "8",
                            "--eval-samples", "4", "--eval-inference-steps", "2"])
    assert r.exit_code == 0, r.stderr
    assert "warning: every latent of store" in r.stderr and "is the same" in r.stderr


def test_evaluate_with_few_references_says_what_n_is(tmp_path):
    refs, gen = tmp_path / "refs.txt", tmp_path / "gen.txt"
    refs.write_text("a cat sat\nthe dog ran fast\nbirds fly high\n", encoding="utf-8")
    gen.write_text("a cat sat there\nthe dog ran\nbirds fly\n", encoding="utf-8")
    r = runner.invoke(app, ["evaluate", str(gen), "--references", str(refs), "--mauve-features", "none"])
    assert r.exit_code == 0, r.stderr
    notes = [x for x in r.stderr.splitlines() if x.startswith("note: N = 1 of the 3 generated texts")]
    assert len(notes) == 1 and "say nothing" in notes[0] and "6 references" in notes[0], r.stderr
