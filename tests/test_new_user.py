"""What a new user meets on their own corpus (issue 23): the gate on a latent space that
carries little, progress that reaches a log, and an interrupt message that names the
command line that resumes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ldlm.autoencoder import reconstruction_warning
from ldlm.cli import app
from ldlm.cli.app import resume_command

runner = CliRunner()


def test_gate_on_a_latent_space_that_carries_little(tmp_path, corpus_file):
    assert reconstruction_warning({"bleu": 72.0}) is None and reconstruction_warning(None) is None
    warning = reconstruction_warning({"bleu": 2.1, "exact_match": 0.0})
    assert warning.startswith("warning: held-out reconstruction BLEU 2.1 is below 50")
    for advice in ("--max-minutes", "--size", "--max-length", "--encoder"):
        assert advice in warning
    out = tmp_path / "ae"
    r = runner.invoke(app, ["train-autoencoder", str(corpus_file), "--out", str(out), "--size", "tiny",
                            "--max-steps", "2", "--eval-rows", "8", "--batch-size", "8"])
    assert r.exit_code == 0, r.stderr
    bleu = json.loads((out / "config.json").read_text())["config"]["extra"]["reconstruction"]["bleu"]
    assert bleu < 50  # two steps learn nothing
    assert "warning: held-out reconstruction BLEU" in r.stderr and "warning" not in r.stdout
    assert "max length" in r.stderr  # the measured length is reported at the start
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert json.loads(info.stdout)["warning"].startswith("warning: held-out reconstruction BLEU")


def test_progress_reaches_a_log_as_plain_lines(tmp_path, corpus_file, monkeypatch):
    """stderr not a terminal (CliRunner, a file, a pipe): plain lines with the step, the total,
    the rate, the time left and the loss, instead of bars that a log never shows."""
    monkeypatch.setenv("LDLM_PROGRESS_SECONDS", "0")
    r = runner.invoke(app, ["train-autoencoder", str(corpus_file), "--out", str(tmp_path / "ae"),
                            "--size", "tiny", "--max-steps", "6", "--eval-rows", "4", "--batch-size", "8"])
    assert r.exit_code == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("train-autoencoder: ")]
    assert lines and lines[-1].startswith("train-autoencoder: 6/6 step, "), r.stderr
    assert "step/s" in lines[-1] and "elapsed" in lines[-1] and "loss" in lines[-1]
    assert any("left" in x for x in lines[:-1]), lines


def test_a_sampled_latent_file_names_its_row_count(tiny_ae, tiny_store, tmp_path, monkeypatch):
    from ldlm.latent_file import open_latents
    from ldlm.train import TrainArgs, train_diffusion
    from tests.test_train_sample import FAST, TINY

    run = tmp_path / "run"
    train_diffusion(tiny_store, run, TrainArgs(arch="mlp", denoiser=dict(TINY["mlp"]),
                                               **{**FAST, "max_steps": 2}))
    out = tmp_path / "x.ldlm"
    r = runner.invoke(app, ["sample", str(run), "--num-samples", "7", "--num-inference-steps", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert open_latents(str(out)).rows == 7  # decode's progress has a total, not "7/?"
    monkeypatch.setenv("LDLM_PROGRESS_SECONDS", "0")
    r = runner.invoke(app, ["decode", str(out), "--batch-size", "2"])
    assert r.exit_code == 0 and "decode: 7/7 texts" in r.stderr, r.stderr


def test_the_interrupt_message_names_the_command_that_resumes(monkeypatch):
    monkeypatch.setattr("sys.argv", ["ldlm", "train", "s.zarr", "--out", "run dir", "--overwrite"])
    assert resume_command("train", "--resume") == "resume with: ldlm train s.zarr --out 'run dir' --resume"
    monkeypatch.setattr("sys.argv", ["ldlm", "train-autoencoder", "d.txt", "--out", "ae", "--resume"])
    assert resume_command("train-autoencoder", "--resume") == \
        "resume with: ldlm train-autoencoder d.txt --out ae --resume"
    monkeypatch.setattr("sys.argv", ["python", "-c"])  # not a command line: the general advice
    assert resume_command("train", "--resume") == "rerun the same command with --resume to resume"
    assert resume_command("encode", None) == "rerun the same command to resume"
