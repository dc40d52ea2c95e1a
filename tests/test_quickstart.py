"""The built-in default run: every stage's artefact in one folder, reruns reuse them."""

from __future__ import annotations

import json

import pytest

from ldlm.autoencoder import load_autoencoder
from ldlm.quickstart import QuickstartSettings, run_quickstart
from ldlm.store import LatentStore

TINY = QuickstartSettings(size="tiny", autoencoder_steps=4, diffusion_steps=4, num_samples=12)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "out"
    return run_quickstart(out, TINY)


def test_every_stage_lands_in_one_folder(quickstart):
    p = quickstart.paths
    assert load_autoencoder(p["autoencoder"]).fingerprint == quickstart.latent_space
    store = LatentStore.open(p["store"])
    assert store.rows == quickstart.rows == 5000
    assert (p["run"] / "ldlm_run.json").exists()
    texts = p["texts"].read_text(encoding="utf-8").splitlines()
    assert texts == quickstart.samples and len(texts) == TINY.num_samples
    saved = json.loads(p["evaluation"].read_text())
    assert set(saved["rows"]) == {"model", "reference"}
    assert saved["mauve_features"] and "MiniLM" in saved["mauve_features"]
    # the human row is real held-out text: its copy rate of the training texts is low
    assert saved["rows"]["reference"]["copy_rate"]["mean"] < 0.5


def test_rerun_reuses_every_artefact(quickstart):
    p = quickstart.paths
    before = {k: v.stat().st_mtime_ns for k, v in p.items()}
    again = run_quickstart(quickstart.out, TINY)
    assert {k: v.stat().st_mtime_ns for k, v in p.items()} == before
    assert again.samples == quickstart.samples
    assert again.evaluation.as_dict()["rows"] == quickstart.evaluation.as_dict()["rows"]


def test_a_lost_stage_is_redone_from_the_ones_before(quickstart, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quickstart.out, out)
    (out / "samples.txt").unlink()
    (out / "evaluation.json").unlink()
    again = run_quickstart(out, TINY)
    assert again.samples == quickstart.samples  # decoded again from the same latents
    assert (out / "evaluation.json").exists()
