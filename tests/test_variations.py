"""Starting from text: SDEdit variations (`ldlm sample --init-text`) and `ldlm interpolate`."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.errors import InputError
from ldlm.sample import sample_latents
from ldlm.variations import (
    interpolate,
    interpolate_texts,
    sample_variations,
    slerp,
    variation_texts,
)
from tests.conftest import CORPUS, one_line_error, read_jsonl

runner = CliRunner()


def encode_texts(model, texts):
    return model.encode_texts(texts).cpu().numpy()


TEXTS = ["the cat sat on the mat", "a family friendly pub near the river"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_ae):
    """A tiny mlp run in tiny_ae's latent space. eps-prediction: at a small strength its few
    remaining steps move the latent by sqrt(1 - alpha_bar) * (eps error), so even a barely
    trained model must give back the input (an x0 model returns its own, untrained, estimate)."""
    from ldlm.data import TextRows
    from ldlm.encode import encode_dataset
    from ldlm.train import TrainArgs, train_diffusion

    base = tmp_path_factory.mktemp("variations")
    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    encode_dataset(rows, tiny_ae, base / "latents.zarr", batch_size=16, chunk_rows=32)
    train_diffusion(base / "latents.zarr", base / "run", TrainArgs(
        arch="mlp", size="tiny", denoiser={"widths": [32, 16], "time_dim": 8}, objective="eps",
        max_steps=40, batch_size=16, learning_rate=3e-3, lr_warmup_steps=1, eval_rows=0,
        eval_samples=2, eval_inference_steps=2, save_samples_epochs=1000, save_model_epochs=1000))
    return base / "run"


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm-solver"])
def test_small_strength_gives_back_the_input(tiny_run, tiny_ae, scheduler):
    want = encode_texts(load_autoencoder(tiny_ae), TEXTS)  # (2, 4, 16)
    apart = np.linalg.norm(want[0] - want[1])  # how far two different texts lie

    def error(strength):  # distance of each variation to its own input (2,)
        got = sample_variations(tiny_run, TEXTS, strength=strength, num_inference_steps=100,
                                scheduler=scheduler, seed=1).latents
        return np.linalg.norm(got - want, axis=(1, 2))

    near, mid, far = error(0.02), error(0.1), error(0.5)
    assert (near < 0.1 * apart).all(), (near, apart)
    assert (near < mid).all() and (mid < far).all() and (far > 0.3 * apart).all(), (near, mid, far)


def test_strength_one_is_plain_sampling(tiny_run):
    var = sample_variations(tiny_run, TEXTS, strength=1.0, num_samples=3, num_inference_steps=4,
                            scheduler="ddpm", seed=3, batch_size=4)
    plain, _ = sample_latents(tiny_run, num_samples=6, num_inference_steps=4, scheduler="ddpm", seed=3,
                              batch_size=4)
    np.testing.assert_array_equal(var.latents, plain)


def test_variations_are_deterministic_and_record_their_source(tiny_run):
    kw = dict(strength=0.5, num_samples=2, num_inference_steps=10, scheduler="dpm-solver")
    a = sample_variations(tiny_run, TEXTS, seed=5, **kw)
    b = sample_variations(tiny_run, TEXTS, seed=5, **kw)
    c = sample_variations(tiny_run, TEXTS, seed=6, **kw)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert not np.allclose(a.latents, c.latents)
    assert a.latents.shape == (4, 4, 16)
    assert not np.allclose(a.latents[0], a.latents[1])  # two variations of one text differ
    assert a.meta == [{"source": t, "strength": 0.5} for t in TEXTS for _ in range(2)]
    assert a.header.extra["strength"] == 0.5 and a.header.latent_space == load_autoencoder_fp(tiny_run)


def test_variation_texts_decode_with_their_source(tiny_run):
    from ldlm.decode import DecodeArgs

    rows = variation_texts(tiny_run, TEXTS, strength=0.3, num_samples=2, num_inference_steps=10,
                           decode_args=DecodeArgs(max_new_tokens=4, temperature=0))
    assert [(r["index"], r["source"], r["strength"]) for r in rows] == [
        (i, TEXTS[i // 2], 0.3) for i in range(4)]
    assert all(isinstance(r["text"], str) for r in rows)


def load_autoencoder_fp(run):
    return json.loads((run / "ldlm_run.json").read_text())["latent_space"]


def test_slerp_keeps_the_normalised_sphere(tiny_ae):
    model = load_autoencoder(tiny_ae)
    a, b = encode_texts(model, TEXTS)
    result, _ = interpolate(TEXTS[0], TEXTS[1], tiny_ae, steps=5)
    assert result.t == [0, 0.25, 0.5, 0.75, 1]
    np.testing.assert_allclose(result.latents[0], a, atol=1e-5)
    np.testing.assert_allclose(result.latents[-1], b, atol=1e-5)
    norms = np.linalg.norm(result.latents, axis=-1)  # (5, k)
    np.testing.assert_allclose(norms, math.sqrt(16), rtol=1e-3)
    np.testing.assert_allclose(result.latents.mean(-1), 0, atol=1e-4)
    mid = result.latents[2]
    assert not np.allclose(mid, a, atol=0.1) and not np.allclose(mid, b, atol=0.1)
    # slerp splits the angle evenly: the midpoint is as far from a as from b
    np.testing.assert_allclose(np.linalg.norm(mid - a, axis=-1), np.linalg.norm(mid - b, axis=-1),
                               rtol=1e-4)
    np.testing.assert_allclose(slerp(a, a, 0.3), a, atol=1e-5)  # parallel tokens: no NaN


def test_interpolation_with_a_run(tiny_run, tiny_ae):
    records = interpolate_texts(TEXTS[0], TEXTS[1], run_dir=tiny_run, steps=3, strength=0.2,
                                num_inference_steps=10, decode_args=None)
    assert [r["t"] for r in records] == [0, 0.5, 1]
    assert all(isinstance(r["text"], str) and r["strength"] == 0.2 for r in records)
    plain = interpolate_texts(TEXTS[0], TEXTS[1], tiny_ae, steps=3)
    assert [r["t"] for r in plain] == [0, 0.5, 1] and "strength" not in plain[0]


def test_cli_variations_into_decode(tiny_run, tmp_path):
    out = tmp_path / "v.ldlm"
    init = tmp_path / "init.txt"
    init.write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\n", encoding="utf-8")
    r = runner.invoke(app, ["sample", str(tiny_run), "--init-file", str(init), "--num-samples", "2",
                            "--strength", "0.3", "--num-inference-steps", "10", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["decode", str(out), "--format", "jsonl", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.stderr
    rows = read_jsonl(r.stdout)
    assert [(x["source"], x["strength"]) for x in rows] == [(t, 0.3) for t in TEXTS for _ in range(2)]
    r = runner.invoke(app, ["sample", str(tiny_run), "--init-text", TEXTS[1], "--num-samples", "3",
                            "--num-inference-steps", "4", "--batch-size", "2",
                            "--out", str(tmp_path / "v.zarr")])
    assert r.exit_code == 0, r.stderr
    from ldlm.store import LatentStore

    store = LatentStore.open(tmp_path / "v.zarr")
    assert store.rows == 3 and store.read_texts(0, 3) == [TEXTS[1]] * 3


def test_cli_interpolate(tiny_ae, tmp_path):
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--autoencoder", str(tiny_ae),
                            "--steps", "4", "--max-new-tokens", "6"])
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--autoencoder", str(tiny_ae),
                            "--steps", "3", "--max-new-tokens", "6", "--format", "jsonl"])
    assert r.exit_code == 0, r.stderr
    assert [x["t"] for x in read_jsonl(r.stdout)] == [0, 0.5, 1]
    out = tmp_path / "i.ldlm"
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--autoencoder", str(tiny_ae),
                            "--out", str(out)])
    assert r.exit_code == 0 and r.stdout == "", r.stderr
    r = runner.invoke(app, ["decode", str(out), "--format", "jsonl", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.stderr
    assert [x["t"] for x in read_jsonl(r.stdout)] == [0, 0.25, 0.5, 0.75, 1]


def test_cli_defaults_agree_with_the_library():
    import inspect

    import ldlm.variations as lib
    from ldlm import recipe

    params = inspect.signature(lib.interpolate).parameters
    args = lib.interpolation_args()
    assert (params["strength"].default, args.num_inference_steps, args.scheduler) == (
        recipe.INTERPOLATION_STRENGTH, recipe.INTERPOLATION_STEPS, recipe.INTERPOLATION_SAMPLER)
    from ldlm.cli.fields import option_defaults
    from ldlm.cli.interpolate import interpolate_cmd

    cli = option_defaults(interpolate_cmd)
    assert (cli["num_inference_steps"], cli["scheduler"]) == (args.num_inference_steps, args.scheduler)
    shown = " ".join(runner.invoke(app, ["interpolate", "--help"]).stdout.split())
    assert f"(default {recipe.INTERPOLATION_STRENGTH})" in shown
    assert f"[default: {recipe.INTERPOLATION_STEPS}]" in shown


def test_bad_inputs(tiny_run, tiny_ae, other_ae, tmp_path):
    init = tmp_path / "init.txt"
    init.write_text("x\n")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    run = str(tiny_run)
    cases = [
        (["sample", run, "--init-text", ""], "is empty"),
        (["sample", run, "--init-text", "a", "--init-text", " "], "--init-text number 2 is empty"),
        (["sample", run, "--init-text", "a", "--strength", "0"], "--strength 0.0 must be in (0, 1]"),
        (["sample", run, "--init-text", "a", "--strength", "1.5"], "--strength 1.5 must be in (0, 1]"),
        (["sample", run, "--init-text", "a", "--strength", "nan"], "--strength nan must be a finite number"),
        (["sample", run, "--init-text", "a", "--strength", "0.01", "--num-inference-steps", "20"],
         "leaves no step to run"),
        (["sample", run, "--init-text", "a", "--init-file", str(init)], "--init-text and --init-file"),
        (["sample", run, "--strength", "0.5"], "--strength applies to variations"),
        (["sample", run, "--init-file", str(tmp_path / "none.txt")], "does not exist"),
        (["sample", run, "--init-file", str(blank)], "holds no text"),
        (["sample", run, "--init-text", "a", "--autoencoder", str(other_ae)], "was trained in"),
        (["interpolate", "a", "b", "--autoencoder", str(tiny_ae), "--steps", "1"], "--steps 1"),
        (["interpolate", "", "b", "--autoencoder", str(tiny_ae)], "TEXT_A is empty"),
        (["interpolate", "a", "b"], "no autoencoder"),
        (["interpolate", "a", "b", "--autoencoder", str(tiny_ae), "--strength", "0.3"], "add --run"),
        (["interpolate", "a", "b", "--run", run, "--strength", "2"], "--strength 2.0"),
        (["interpolate", "a", "b", "--run", run, "--autoencoder", str(other_ae)], "was trained in"),
    ]
    for argv, message in cases:
        line = one_line_error(runner.invoke(app, argv + (["--out", str(tmp_path / "x")]
                                                         if argv[0] == "sample" else [])), 2)
        assert message in line, (argv, line)
    with pytest.raises(InputError, match="no input text"):
        sample_variations(tiny_run, [])
