"""Two-process runs under `accelerate launch` on the CPU (gloo): encode, train and
train-autoencoder split over processes, resumed with the same or another process count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ldlm.batches import DataOrder
from ldlm.store import LatentStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`accelerate launch --num-processes N -m ldlm ARGS` (its torchrun launcher, gloo on CPU)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "ldlm", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def ldlm(args: list[str]) -> subprocess.CompletedProcess:
    """The same command in one plain process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "ldlm", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_data_order_gives_each_rank_disjoint_rows():
    order = DataOrder(rows=50, batch_size=4, processes=2, seed=3)
    for micro in range(order.per_epoch * 2):
        a, b = order.batch(micro, 0), order.batch(micro, 1)
        assert len(a) == len(b) == 4 and not set(a) & set(b)
    seen = np.concatenate([order.batch(m, r) for m in range(order.per_epoch) for r in (0, 1)])
    assert len(set(seen)) == len(seen) == order.per_epoch * 8  # one epoch: no row twice


def test_encode_two_processes_equals_one(tiny_ae, corpus_file, tmp_path):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    common = ["--autoencoder", str(tiny_ae), "--chunk-rows", "16", "--batch-size", "8"]
    ldlm(["encode", str(corpus_file), "--store", str(one), *common])
    result = launch(["encode", str(corpus_file), "--store", str(two), *common])
    assert result.stdout.count("encoded 60 rows") == 1  # the main process speaks for both
    a, b = LatentStore.open(one), LatentStore.open(two)
    assert b.done_chunks().all() and b.complete and b.rows == a.rows == 60
    assert b.read_texts() == a.read_texts()
    np.testing.assert_allclose(b.read_latents(), a.read_latents(), atol=1e-5)
    for x, y in zip(a.stats(), b.stats(), strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5)

    # a chunk of each rank lost (as after a kill): a rerun redoes just those two chunks
    store = LatentStore.open(two, require_complete=False, writable=True)
    store.array("done")[0] = 0
    store.array("done")[3] = 0
    store.array("latents")[0:16] = 0.0
    store.update_attributes({"complete": False})
    result = launch(["encode", str(corpus_file), "--store", str(two), *common])
    assert "encoded 28 rows" in result.stdout  # chunk 0 (16 rows) and the last chunk (12)
    np.testing.assert_allclose(LatentStore.open(two).read_latents(), a.read_latents(), atol=1e-5)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_two_processes_and_resume_with_another_count(tiny_store, tmp_path):
    from ldlm.sample import sample_latents

    run, alone = tmp_path / "run", tmp_path / "alone"
    common = ["--arch", "mlp", "--size", "tiny", "--batch-size", "4", "--lr-warmup-steps", "2",
              "--checkpointing-steps", "3", "--eval-samples", "4", "--eval-inference-steps", "2",
              "--save-samples-epochs", "1000"]
    result = launch(["train", str(tiny_store), "--out", str(run), "--max-steps", "6", *common])
    assert result.stdout.count("saved") == 1
    ckpt = run / "checkpoint-6"
    assert {"random_states_0.pkl", "random_states_1.pkl", "noise_generator_1.pt"} <= {
        p.name for p in ckpt.iterdir()}
    records = [r for r in _metrics(run) if "loss" in r]
    assert len({r["step"] for r in records}) == len(records)  # written by one process only
    # the learning rate follows optimiser steps, not processes: one process gives the same lr
    ldlm(["train", str(tiny_store), "--out", str(alone), "--max-steps", "6", *common])
    lr_two = {r["step"]: r["lr"] for r in records}
    lr_one = {r["step"]: r["lr"] for r in _metrics(alone) if "loss" in r}
    assert lr_two[6] == pytest.approx(lr_one[6])

    # resume the two-process checkpoint in one process, then that one's in two processes
    ldlm(["train", str(tiny_store), "--out", str(run), "--max-steps", "9", "--resume", *common])
    launch(["train", str(tiny_store), "--out", str(run), "--max-steps", "12", "--resume", *common])
    meta = json.loads((run / "ldlm_run.json").read_text())
    assert meta["steps"] == 12 and (run / "checkpoint-12").is_dir()
    z, _ = sample_latents(run, num_samples=3, num_inference_steps=2, seed=0)
    assert np.isfinite(z).all() and z.shape == (3, 4, 16)


def test_train_autoencoder_two_processes_and_resume_alone(corpus_file, tmp_path):
    from ldlm.autoencoder import load_autoencoder

    out = tmp_path / "ae"
    common = ["--size", "tiny", "--max-length", "24", "--latent-tokens", "4", "--latent-dim", "16",
              "--batch-size", "8", "--checkpointing-steps", "4", "--eval-rows", "4"]
    result = launch(["train-autoencoder", str(corpus_file), "--out", str(out), "--max-steps", "8",
                     *common])
    assert result.stdout.count("saved") == 1
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {
        p.name for p in (out / "checkpoint-8").iterdir()}
    model = load_autoencoder(out)
    assert model.encode_texts(["the cat sat on the mat"]).shape == (1, 4, 16)
    ldlm(["train-autoencoder", str(corpus_file), "--out", str(out), "--max-steps", "12", "--resume",
          *common])
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["extra"]["training"]["resumed_from_step"] == 8
