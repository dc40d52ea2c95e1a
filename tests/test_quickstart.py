"""The built-in default run: every stage's artefact in one folder, reruns reuse them."""

from __future__ import annotations

import json

import pytest

from ldlm.autoencoder import load_autoencoder
from ldlm.errors import InputError
from ldlm.quickstart import QuickstartSettings, run_quickstart, stage_budgets
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
    # the default budget (15 CPU-minutes) is far more than 4 steps need: both reach their caps
    assert quickstart.autoencoder_steps == quickstart.diffusion_steps == 4


def test_the_budget_is_shared_by_the_trainers():
    """900 CPU-seconds in all by default; the trainers get most of it, the rest pays for the
    stages that have no budget of their own (encode, sample, decode, evaluate, start-up)."""
    default = QuickstartSettings()
    assert 60 * default.max_minutes == 900 and default.budget_clock == "cpu"
    shares = stage_budgets(QuickstartSettings(max_minutes=10))
    assert shares["autoencoder"] > shares["diffusion"] > 0
    assert 8 < sum(shares.values()) < 10
    for bad in (QuickstartSettings(max_minutes=0), QuickstartSettings(budget_clock="sundial")):
        with pytest.raises(InputError):
            run_quickstart("never-made", bad)


def test_rerun_reuses_every_artefact(quickstart):
    p = quickstart.paths
    before = {k: v.stat().st_mtime_ns for k, v in p.items()}
    again = run_quickstart(quickstart.out, TINY)
    assert {k: v.stat().st_mtime_ns for k, v in p.items()} == before
    assert again.samples == quickstart.samples
    assert again.autoencoder_steps == again.diffusion_steps == 4  # read back from the artefacts
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
