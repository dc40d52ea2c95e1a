"""The cases a hostile review found that the fault and bad-input suites missed (issue 21):
nothing lost, nothing silently wrong, nobody else's code run. One test (or a few) per case,
numbered as in the review."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ldlm.cli import app
from ldlm.errors import RuntimeFailure
from ldlm.train import TrainArgs, train_diffusion
from tests.test_train_sample import FAST, TINY, make_store

runner = CliRunner()


class _RunsCode:
    """A pickle that creates a file when unpickled (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_run(store: Path, out: Path, steps: int, resume: str | None = None):
    return train_diffusion(store, out, TrainArgs(
        arch="mlp", denoiser=dict(TINY["mlp"]), **{**FAST, "max_steps": steps, "checkpointing_steps": 2},
        resume=resume))


# ----- 17, 19: a checkpoint folder cannot carry code ------------------------------------------
def test_resume_runs_no_code_from_a_crafted_checkpoint(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    out = tmp_path / "run"
    _tiny_run(store, out, 2)
    ckpt = out / "checkpoint-2"
    assert not list(ckpt.glob("custom_checkpoint_*"))  # ldlm's own state: JSON and safetensors
    assert {"ldlm_state_0.json", "ldlm_state_0.safetensors"} <= {p.name for p in ckpt.iterdir()}
    marker = tmp_path / "ran"
    # a pickle beside the state, named as accelerate names its custom states: refused unread
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(RuntimeFailure, match="checkpoint .*checkpoint-2' cannot be loaded"):
        _tiny_run(store, out, 4, resume="latest")
    assert not marker.exists()
    (ckpt / "custom_checkpoint_0.pkl").unlink()
    result = _tiny_run(store, out, 4, resume="latest")
    assert result.steps == 4
    # a pickle in place of a file accelerate does read (the RNG state): refused, not run
    for f in (out / "checkpoint-4").glob("random_states_*.pkl"):
        f.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(RuntimeFailure, match="checkpoint .*checkpoint-4' cannot be loaded"):
        _tiny_run(store, out, 6, resume="latest")
    assert not marker.exists()


def test_autoencoder_resume_runs_no_code(tmp_path, corpus_file):
    marker = tmp_path / "ran"
    out = tmp_path / "ae"
    base = ["train-autoencoder", str(corpus_file), "--out", str(out), "--size", "tiny",
            "--max-length", "16", "--latent-tokens", "2", "--latent-dim", "8", "--batch-size", "4",
            "--eval-rows", "0", "--checkpointing-steps", "2"]
    r = runner.invoke(app, [*base, "--max-steps", "2"])
    assert r.exit_code == 0, r.stderr
    for f in (out / "checkpoint-2").glob("random_states_*.pkl"):
        f.write_bytes(pickle.dumps(_RunsCode(marker)))
    r = runner.invoke(app, [*base, "--max-steps", "4", "--resume"])
    assert r.exit_code == 1 and "cannot be loaded" in r.stderr, r.stderr
    assert not marker.exists()


def test_state_dicts_round_trip_without_pickles(tmp_path):
    import torch

    from ldlm.loop import load_state_dict, save_state_dict

    state = {"step": 3, "lr": [0.1, 2e-5], "flag": True, "none": None, "name": "x",
             "gen": torch.Generator().manual_seed(1).get_state(),
             "nested": {"w": [torch.ones(2, 3), torch.zeros(1)], 7: "int key"}}
    save_state_dict(state, tmp_path / "s")
    back = load_state_dict(tmp_path / "s")
    assert back["step"] == 3 and back["lr"] == [0.1, 2e-5] and back["flag"] is True
    assert back["none"] is None and back["nested"][7] == "int key"
    assert torch.equal(back["gen"], state["gen"]) and torch.equal(back["nested"]["w"][0], torch.ones(2, 3))
    with pytest.raises(TypeError, match="holds a set"):
        save_state_dict({"bad": {1, 2}}, tmp_path / "t")
