"""ldlm train and ldlm sample: the library functions, the resume guarantee, the CLI and the pipe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ldlm.batches import DataOrder
from ldlm.cli import app
from ldlm.errors import InputError, RuntimeFailure
from ldlm.progress import Reporter
from ldlm.sample import sample_latents
from ldlm.store import LatentStore, holdout_rows
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import one_line_error

runner = CliRunner()
TINY = {
    "mlp": {"widths": [16, 8], "time_dim": 8},
    "unet2d": {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4},
    "transformer": {"width": 16, "layers": 1, "heads": 2, "time_dim": 8},
}
FAST = dict(size="tiny", batch_size=8, lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2,
            save_samples_epochs=100, save_model_epochs=100)


def make_store(path: Path, rows: int = 60, complete: bool = True) -> Path:
    """A store of Gaussian latents (4, 16) with mean 1 and std 2 (no autoencoder needed)."""
    rng = np.random.default_rng(0)
    store = LatentStore.create(str(path), rows=rows, latent_shape=(4, 16), chunk_rows=16,
                               attributes={"latent_space": "fake-space", "autoencoder": "/no/ae"})
    x = (rng.normal(size=(rows, 4, 16)) * 2 + 1).astype("f4")
    for c in range(store.num_chunks if complete else 1):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, x[a:b], ["t"] * (b - a), np.zeros(b - a))
    if complete:
        store.finalize()
    return path


@pytest.fixture
def fake_store(tmp_path) -> Path:
    return make_store(tmp_path / "fake.zarr")


def args(arch="mlp", **kw) -> TrainArgs:
    return TrainArgs(**{"arch": arch, "denoiser": dict(TINY[arch]), **FAST, **kw})


@pytest.mark.parametrize("arch", ["mlp", "unet2d", "transformer"])
@pytest.mark.parametrize("objective,scheduler", [("eps", "ddpm"), ("x0", "ddim"), ("v", "dpm-solver")])
def test_train_then_sample(fake_store, tmp_path, arch, objective, scheduler):
    run = tmp_path / "run"
    result = train_diffusion(fake_store, run, args(arch, objective=objective, max_steps=2,
                                                   self_condition=arch == "transformer"))
    assert result.steps == 2 and np.isfinite(result.loss)
    meta = json.loads((run / "ldlm_run.json").read_text())
    assert meta["arch"] == arch and meta["objective"] == objective and meta["latent_shape"] == [4, 16]
    assert (run / "denoiser" / "config.json").is_file()
    assert (run / "scheduler" / "scheduler_config.json").is_file()
    assert (run / "checkpoint-2").is_dir()
    x, header = sample_latents(run, num_samples=3, num_inference_steps=2, scheduler=scheduler,
                               device="cpu")
    assert x.shape == (3, 4, 16) and np.isfinite(x).all()
    assert header.latent_space == "fake-space" and header.autoencoder == "/no/ae"


def test_run_contents_and_standardisation(fake_store, tmp_path):
    run = tmp_path / "run"
    # 57 training rows, batch 8: 7 micro-batches per epoch; 16 steps = 2 epochs and a bit
    result = train_diffusion(fake_store, run, args(objective="x0", max_steps=16, learning_rate=1e-12,
                                                   save_samples_epochs=1, save_model_epochs=1))
    mean, std = LatentStore.open(fake_store).stats()
    meta = json.loads((run / "ldlm_run.json").read_text())
    np.testing.assert_allclose(np.reshape(meta["stats_mean"], (4, 16)), mean)
    np.testing.assert_allclose(np.reshape(meta["stats_std"], (4, 16)), std)
    assert meta["heldout_rows"] == 3 and meta["latent_space"] == "fake-space"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-14", "checkpoint-16",
                                                                "checkpoint-7"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "samples-14.ldlm", "samples-16.ldlm", "samples-7.ldlm"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fds = [r["frechet_distance"] for r in records if "frechet_distance" in r]
    assert len(fds) == 3 and all(f >= 0 for f in fds) and result.frechet_distance == fds[-1]
    assert not list(run.glob(".*"))  # no temporary folders left
    from ldlm.info import describe

    facts = describe(str(run))
    assert facts["kind"] == "diffusion run" and facts["finished"] and facts["steps"] == 16
    assert facts["objective"] == "x0" and facts["last_frechet_distance"] == fds[-1]
    # an x0 model whose output layer is still zero predicts x0 = 0: DDPM ends exactly at the
    # standardised origin, which un-standardises to the store mean
    x, _ = sample_latents(run, num_samples=2, num_inference_steps=3, scheduler="ddpm", device="cpu")
    np.testing.assert_allclose(x, np.broadcast_to(mean, x.shape), atol=1e-4)


def test_data_order_and_holdout():
    assert holdout_rows(60, 1000) == 3 and holdout_rows(100_000, 1000) == 1000
    assert holdout_rows(30, 1000) == 0
    order = DataOrder(rows=57, batch_size=8, processes=2, seed=1)
    seen = np.concatenate([order.batch(m, r) for m in range(order.per_epoch) for r in range(2)])
    assert len(set(seen.tolist())) == len(seen) == 48 and seen.max() < 57
    np.testing.assert_array_equal(order.batch(5, 1), order.batch(5, 1))


def test_sampling_is_deterministic(fake_store, tmp_path):
    run = tmp_path / "run"
    train_diffusion(fake_store, run, args("transformer", max_steps=2, self_condition=True))
    a, _ = sample_latents(run, num_samples=4, num_inference_steps=3, seed=5, batch_size=2)
    b, _ = sample_latents(run, num_samples=4, num_inference_steps=3, seed=5, batch_size=2)
    c, _ = sample_latents(run, num_samples=4, num_inference_steps=3, seed=6, batch_size=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_every_sampler_and_ddim_eta(fake_store, tmp_path):
    """Each sampler of the table samples; DDIM's eta reaches its step (eta 0 is deterministic
    DDIM: the same latents as without the flag; eta 1 adds step noise); eta elsewhere is refused."""
    from ldlm.schedulers import SAMPLERS

    run = tmp_path / "run"
    train_diffusion(fake_store, run, args(objective="x0", max_steps=4))
    for name in SAMPLERS:
        x, header = sample_latents(run, num_samples=3, num_inference_steps=4, scheduler=name)
        assert np.isfinite(x).all() and header.extra["scheduler"] == name
    plain, _ = sample_latents(run, num_samples=3, num_inference_steps=4, scheduler="ddim")
    zero, _ = sample_latents(run, num_samples=3, num_inference_steps=4, scheduler="ddim", eta=0.0)
    noisy, header = sample_latents(run, num_samples=3, num_inference_steps=4, scheduler="ddim", eta=1.0)
    np.testing.assert_array_equal(plain, zero)
    assert not np.allclose(plain, noisy) and header.extra["eta"] == 1.0
    with pytest.raises(InputError, match="--eta 0.5 applies to --scheduler ddim, not dpm-solver"):
        sample_latents(run, num_samples=1, scheduler="dpm-solver", eta=0.5)
    with pytest.raises(InputError, match="--eta 2.0 must be in"):
        sample_latents(run, num_samples=1, scheduler="ddim", eta=2.0)


def test_bf16_and_per_batch_reads(fake_store, tmp_path):
    """bf16 autocast on any device; a store too big for memory is read batch by batch."""
    run = tmp_path / "run"
    result = train_diffusion(fake_store, run, args("transformer", max_steps=2, mixed_precision="bf16",
                                                   memory_limit_mb=0))
    assert result.steps == 2 and np.isfinite(result.loss)
    x, _ = sample_latents(run, num_samples=2, num_inference_steps=2, scheduler="ddim")
    assert np.isfinite(x).all()


@pytest.mark.parametrize("memory_limit_mb", [2048, 0])
def test_fd_is_logged_beside_its_floor(fake_store, tmp_path, memory_limit_mb):
    """The floor: as many true training latents as samples, spread over the training rows,
    against the same held-out rows (the same whether the rows are in memory or streamed)."""
    from ldlm.metrics import frechet_distance

    run = tmp_path / "run"
    result = train_diffusion(fake_store, run, args(max_steps=16, save_samples_epochs=1,
                                                   memory_limit_mb=memory_limit_mb))
    store = LatentStore.open(fake_store)
    held = holdout_rows(store.rows, 1000)  # TrainArgs' eval_rows
    x = store.read_latents()
    pick = np.linspace(0, store.rows - held - 1, FAST["eval_samples"]).round().astype(int)
    floor = frechet_distance(x[pick], x[store.rows - held:])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "frechet_distance" in r]
    assert len(logged) == 3 and all(r["fd_floor"] == pytest.approx(floor) for r in logged)
    assert result.fd_floor == pytest.approx(floor)
    assert result.frechet_distance == logged[-1]["frechet_distance"]
    from ldlm.info import describe

    assert describe(str(run))["last_fd_floor"] == pytest.approx(floor)


class StopAt(Reporter):
    """Interrupts training after `n` steps, as a kill would."""

    def __init__(self, n):
        self.n = n

    def advance(self, n=1, **fields):
        self.n -= n
        if self.n < 0:
            raise KeyboardInterrupt


def test_resume_continues_exactly(fake_store, tmp_path):
    kw = dict(objective="v", self_condition=True, max_steps=8, gradient_accumulation_steps=2,
              checkpointing_steps=4, learning_rate=1e-3)
    train_diffusion(fake_store, tmp_path / "a", args(**kw))
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(fake_store, tmp_path / "b", args(**kw), reporter=StopAt(6))
    assert not (tmp_path / "b" / "ldlm_run.json").exists()
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-4"]
    train_diffusion(fake_store, tmp_path / "b", args(**kw, resume="latest"))
    for name in ("checkpoint-8/model.safetensors", "denoiser/diffusion_pytorch_model.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    # a given checkpoint folder works too, and a finished run resumes to no extra steps
    result = train_diffusion(fake_store, tmp_path / "b",
                             args(**kw, resume=str(tmp_path / "b" / "checkpoint-8")))
    assert result.steps == 8


def test_nan_loss_stops_and_keeps_checkpoint(fake_store, tmp_path, monkeypatch):
    from ldlm import diffusion

    real, calls = diffusion.Diffusion.loss, []

    def loss(self, model, x0, generator):
        calls.append(1)
        value = real(self, model, x0, generator)
        return value * float("nan") if len(calls) > 3 else value

    monkeypatch.setattr(diffusion.Diffusion, "loss", loss)
    with pytest.raises(RuntimeFailure, match=r"loss became nan at step 4; the last good checkpoint "
                                             r"is .*checkpoint-2"):
        train_diffusion(fake_store, tmp_path / "run", args(max_steps=10, checkpointing_steps=2))
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    assert not (tmp_path / "run" / "ldlm_run.json").exists()


def test_push_to_hub_fails_after_the_local_save(fake_store, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    run = tmp_path / "run"
    with pytest.raises(RuntimeFailure, match="the model is saved in .* but pushing it to the hub"):
        train_diffusion(fake_store, run, args(max_steps=1, push_to_hub=True, hub_model_id="me/m"))
    assert (run / "ldlm_run.json").is_file() and (run / "README.md").is_file()


def test_library_input_errors(fake_store, tmp_path):
    with pytest.raises(InputError, match="--max-steps 0"):
        train_diffusion(fake_store, tmp_path / "r", args(max_steps=0))
    with pytest.raises(InputError, match="no option"):
        train_diffusion(fake_store, tmp_path / "r", args(denoiser={"depth": 3}))
    assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="holds no trained model"):
        sample_latents(tmp_path, num_samples=1)


# ----- the command line ------------------------------------------------------------------
CLI_TINY = ["--size", "tiny", "--batch-size", "8", "--lr-warmup-steps", "1", "--eval-samples", "4",
            "--eval-inference-steps", "2"]


def test_cli_train_sample_and_bad_inputs(fake_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(fake_store), "--out", str(run), "--max-steps", "2", *CLI_TINY])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"saved {run} (mlp, 2 steps")
    out = tmp_path / "z.ldlm"
    r = runner.invoke(app, ["sample", str(run), "--num-samples", "3", "--num-inference-steps", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert info["rows"] == 3 and info["latent_space"] == "fake-space"
    r = runner.invoke(app, ["sample", str(run), "--num-samples", "5", "--num-inference-steps", "2",
                            "--batch-size", "2", "--out", str(tmp_path / "s.zarr")])
    assert r.exit_code == 0, r.stderr
    store = LatentStore.open(tmp_path / "s.zarr")
    assert store.rows == 5 and store.latent_space == "fake-space"
    r = runner.invoke(app, ["sample", str(run), "--num-samples", "2", "--num-inference-steps", "2"])
    assert r.exit_code == 0 and r.stdout_bytes.startswith(b"LDLMLAT1")

    incomplete = make_store(tmp_path / "part.zarr", complete=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    new = str(tmp_path / "new")
    cases = [
        (["train", str(incomplete), "--out", new], "is incomplete"),
        (["train", str(tmp_path / "none.zarr"), "--out", new], "does not exist"),
        (["train", str(fake_store), "--out", new, "--max-steps", "0"], "--max-steps 0"),
        (["train", str(fake_store), "--out", new, "--batch-size", "0"], "--batch-size 0"),
        (["train", str(fake_store), "--out", new, "--num-epochs", "-1"], "--num-epochs -1"),
        (["train", str(fake_store), "--out", new, "--arch", "unet2d", "--adaln"], "--adaln is an option"),
        (["train", str(fake_store), "--out", new, "--resume"], "has no checkpoint"),
        (["train", str(fake_store), "--out", str(run), *CLI_TINY], "already holds a run"),
        (["train", str(fake_store), "--out", str(run), "--arch", "transformer", "--resume", *CLI_TINY],
         "made with arch 'mlp'"),
        (["train", str(fake_store), "--out", str(run), "--resume-from", str(empty)],
         "not a checkpoint folder"),
        (["sample", str(empty)], "holds no trained model"),
        (["sample", str(tmp_path / "nowhere")], "does not exist"),
        (["sample", str(run), "--num-samples", "0"], "--num-samples 0"),
        (["sample", str(run), "--batch-size", "0"], "--batch-size 0"),
        (["sample", str(run), "--num-inference-steps", "0"], "--num-inference-steps 0"),
        (["sample", str(run), "--num-inference-steps", "1001"], "--num-inference-steps 1001"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", str(fake_store), "--out", new, "--mixed-precision", "fp16"],
                      "needs a CUDA GPU"))
    for argv, message in cases:
        line = one_line_error(runner.invoke(app, argv), 2)
        assert message in line, (argv, line)
    assert not Path(new).exists()
    monkeypatch.setattr("ldlm.cli.sample.stdout_is_terminal", lambda: True)
    line = one_line_error(runner.invoke(app, ["sample", str(run)]), 2)
    assert "stdout is a terminal" in line and "--out" in line


def test_cli_nan_loss(fake_store, tmp_path):
    r = runner.invoke(app, ["train", str(fake_store), "--out", str(tmp_path / "run"), "--max-steps", "6",
                            "--learning-rate", "1e30", "--lr-warmup-steps", "0", "--size", "tiny"])
    # the progress bar's last frame may stand above the error; the error is one line, last
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert [x for x in lines if x.startswith("Error:")] == lines[-1:]
    assert "loss became" in lines[-1] and "at step" in lines[-1]


# ----- real processes: the pipe ------------------------------------------------------------
def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}


def test_pipe_sample_into_decode(tiny_store, tmp_path):
    run = tmp_path / "run"
    train_diffusion(tiny_store, run, args(max_steps=2))
    cmd = (f"{sys.executable} -m ldlm sample {run} --num-samples 3 --num-inference-steps 2 "
           f"--scheduler ddim | {sys.executable} -m ldlm decode --max-new-tokens 5 --temperature 0")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 3
    assert "Error" not in p.stderr and "Traceback" not in p.stderr


def test_sample_into_closed_pipe_exits_quietly(fake_store, tmp_path):
    run = tmp_path / "run"
    train_diffusion(fake_store, run, args(max_steps=1))
    # 2000 frames of 264 bytes: far more than a pipe buffer, so the writer meets the closed pipe
    p = subprocess.Popen([sys.executable, "-m", "ldlm", "sample", str(run), "--num-samples", "2000",
                          "--batch-size", "1", "--num-inference-steps", "1", "--scheduler", "ddim"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert p.stdout.read(10)[:8] == b"LDLMLAT1"
    p.stdout.close()
    stderr = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, stderr
    assert "Error" not in stderr and "Traceback" not in stderr and "Exception" not in stderr
