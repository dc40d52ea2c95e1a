"""`ldlm adapt-decoder`: the decoder learns the run's own latents; the latent space stays."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ldlm.adapt import AdaptArgs, adapt_decoder
from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.errors import InputError
from ldlm.run import run_autoencoder
from ldlm.sample import load_run
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import CORPUS, one_line_error

runner = CliRunner()
TINY_MLP = {"widths": [32, 16], "time_dim": 16}
FAST = dict(size="tiny", batch_size=16, lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2,
            save_samples_epochs=1000, save_model_epochs=1000)
QUICK = dict(batch_size=8, warmup_steps=1, learning_rate=3e-3)


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory, tiny_ae) -> Path:
    """A self-conditioning MLP run conditioned on structured texts (both estimate branches)."""
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    root = tmp_path_factory.mktemp("adapt")
    data = root / "rows.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "mr"])
        for t in CORPUS:
            w.writerow([t, f"name[{t.split()[0]}]"])
    store = root / "store.zarr"
    encode_dataset(load_texts(str(data), condition_column="mr"), tiny_ae, store, batch_size=8,
                   chunk_rows=16, condition_type="text", condition_column="mr")
    out = root / "run"
    train_diffusion(store, out, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), conditional=True,
                                          self_condition=True, max_steps=30, **FAST))
    return out


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_ae, corpus_file) -> Path:
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    root = tmp_path_factory.mktemp("adapt_plain")
    store = root / "store.zarr"
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, store, batch_size=8, chunk_rows=16)
    out = root / "run"
    train_diffusion(store, out, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), max_steps=10, **FAST))
    return out


def _state(model, part: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in getattr(model, part).state_dict().items()}


def test_adapting_lowers_the_estimate_loss_and_keeps_the_latent_space(cond_run, tiny_ae, tmp_path):
    out = tmp_path / "adapted"
    result = adapt_decoder(cond_run, out, AdaptArgs(max_steps=40, window_chunks=2, **QUICK))
    before, after = result.estimate_loss
    assert after < before  # the decoder learned to read the denoiser's estimates
    original, adapted = load_autoencoder(tiny_ae), load_autoencoder(out)
    assert adapted.fingerprint == original.fingerprint == load_run(cond_run).meta["latent_space"]
    for part in ("encoder", "compressor"):
        a, b = _state(original, part), _state(adapted, part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    dec_a, dec_b = _state(original, "decoder"), _state(adapted, "decoder")
    assert any(not torch.equal(dec_a[k], dec_b[k]) for k in dec_a)
    record = adapted.config.extra["adapted"]
    assert record["run"] == str(cond_run) and record["max_steps"] == 40
    assert record["estimate_loss"] == [before, after]
    # the run takes the adapted autoencoder as its own latent space
    assert run_autoencoder(load_run(cond_run), out).fingerprint == original.fingerprint


def test_estimate_share_zero_is_plain_decoder_training(plain_run, tmp_path):
    # with no estimates in the batch the objective is the autoencoder's own: clean loss falls
    result = adapt_decoder(plain_run, tmp_path / "a", AdaptArgs(max_steps=30, estimate_share=0.0, **QUICK))
    assert result.clean_loss[1] < result.clean_loss[0]


def test_cli_adapt_then_decode_with_the_adapted_autoencoder(plain_run, tmp_path):
    out = tmp_path / "adapted"
    result = runner.invoke(app, ["adapt-decoder", str(plain_run), "--out", str(out), "--max-steps", "5",
                                 "--batch-size", "8", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"saved {out} (latent space ")
    assert "decoder loss on 3 held-out rows" in lines[1]
    latents = tmp_path / "s.ldlm"
    assert runner.invoke(app, ["sample", str(plain_run), "--num-samples", "3", "--num-inference-steps", "2",
                               "--out", str(latents)]).exit_code == 0
    decoded = runner.invoke(app, ["decode", str(latents), "--autoencoder", str(out), "--max-new-tokens", "5"])
    assert decoded.exit_code == 0, decoded.stderr
    assert len(decoded.stdout.splitlines()) == 3


def test_refuses_to_overwrite_the_autoencoder_or_an_existing_folder(plain_run, tiny_ae, tmp_path):
    error = one_line_error(runner.invoke(app, ["adapt-decoder", str(plain_run), "--out", str(tiny_ae)]), 2)
    assert "is the autoencoder being adapted" in error
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    for overwrite in ([], ["--overwrite"]):  # --overwrite replaces an autoencoder, not other files
        error = one_line_error(runner.invoke(app, ["adapt-decoder", str(plain_run), "--out", str(taken),
                                                   *overwrite]), 2)
        assert "is a folder of other files, not an autoencoder" in error
    assert (taken / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("flag,value,needle", [
    ("--estimate-share", "1.5", "must be in [0, 1]"),
    ("--max-steps", "0", "must be at least 1"),
    ("--learning-rate", "0", "must be in (0, 1)"),
    ("--guidance-scale", "-1", "must be >= 0"),
])
def test_bad_arguments(plain_run, tmp_path, flag, value, needle):
    result = runner.invoke(app, ["adapt-decoder", str(plain_run), "--out", str(tmp_path / "x"), flag, value])
    assert needle in one_line_error(result, 2)
    assert not (tmp_path / "x").exists()


def test_batch_larger_than_the_training_rows(plain_run, tmp_path):
    with pytest.raises(InputError, match="--batch-size 500 exceeds the 57 training rows"):
        adapt_decoder(plain_run, tmp_path / "x", AdaptArgs(max_steps=1, batch_size=500))


def test_a_failed_run_leaves_the_existing_output_intact(plain_run, tmp_path, monkeypatch):
    import ldlm.adapt

    out = tmp_path / "adapted"
    adapt_decoder(plain_run, out, AdaptArgs(max_steps=2, **QUICK))
    saved = (out / "model.safetensors").read_bytes()
    calls = {"n": 0}
    real = ldlm.adapt._decoder_loss

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 8:  # after the before-figures, during training
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(ldlm.adapt, "_decoder_loss", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        adapt_decoder(plain_run, out, AdaptArgs(max_steps=20, **QUICK), overwrite=True)
    assert (out / "model.safetensors").read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapted"]  # no temporary folder left


def test_a_moved_store_is_named_and_store_overrides_it(plain_run, tiny_ae, tmp_path, corpus_file):
    import json
    import shutil

    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    moved = tmp_path / "run"
    shutil.copytree(plain_run, moved)
    meta = json.loads((moved / "ldlm_run.json").read_text())
    meta["store"] = "gone/latents.zarr"  # as a run trained elsewhere, with a relative path
    (moved / "ldlm_run.json").write_text(json.dumps(meta))
    error = one_line_error(runner.invoke(app, ["adapt-decoder", str(moved), "--out", str(tmp_path / "a")]), 2)
    assert "'gone/latents.zarr', which is not here" in error and "--store" in error
    store = tmp_path / "again.zarr"  # the same corpus encoded again: same latent space
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, store, batch_size=8, chunk_rows=16)
    ok = runner.invoke(app, ["adapt-decoder", str(moved), "--out", str(tmp_path / "a"), "--store", str(store),
                             "--max-steps", "2", "--batch-size", "8"])
    assert ok.exit_code == 0, ok.stderr


def test_a_store_from_another_latent_space_is_refused(plain_run, other_ae, corpus_file, tmp_path):
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    store = tmp_path / "other.zarr"
    encode_dataset(load_texts(str(corpus_file)), other_ae, store, batch_size=8, chunk_rows=16)
    with pytest.raises(InputError, match="holds latent space .* but run .* was trained in"):
        adapt_decoder(plain_run, tmp_path / "x", AdaptArgs(max_steps=1), store=store)


def test_sample_names_the_adapted_autoencoder_and_mbr_decodes_with_it(cond_run, tmp_path):
    from ldlm.decode import DecodeArgs, decode_latents, open_latents

    ae = tmp_path / "adapted"
    adapt_decoder(cond_run, ae, AdaptArgs(max_steps=40, **QUICK))
    original = load_autoencoder(load_run(cond_run).meta["autoencoder"])
    adapted = load_autoencoder(ae)
    # what adaptation guarantees: the decoder moved, the latent space did not
    assert adapted.fingerprint == original.fingerprint
    moved = [name for name, w in adapted.decoder.state_dict().items()
             if not torch.equal(w, original.decoder.state_dict()[name])]
    assert moved, "adapt-decoder left every decoder weight as it was"
    # Whether 40 steps flip a greedy decode depends on the processor's float paths, so give the
    # adapted decoder an output the original cannot share: a final norm of zero with a bias
    # makes every position's logits the same, so it writes one token over and over (or nothing).
    with torch.no_grad():
        ln_f = adapted.decoder.transformer.ln_f
        ln_f.weight.zero_()
        ln_f.bias.copy_(adapted.decoder.get_input_embeddings().weight[5])
    adapted.save_pretrained(ae)
    latents = tmp_path / "mbr.ldlm"
    r = runner.invoke(app, ["sample", str(cond_run), "--condition", "name[the]", "--mbr", "3",
                            "--num-samples", "2", "--num-inference-steps", "2", "--scheduler", "ddim",
                            "--autoencoder", str(ae), "--out", str(latents)])
    assert r.exit_code == 0, r.stderr
    stream = open_latents(str(latents))
    assert stream.autoencoder == str(ae.resolve())  # `ldlm decode` picks the adapted one
    rows = list(decode_latents(stream, load_autoencoder(ae), DecodeArgs(temperature=0.0)))
    # the MBR texts were decoded by the adapted decoder: they are its greedy decodes of the kept latents
    assert [row["mbr_text"] for row in rows] == [row["text"] for row in rows]
    assert all(len(set(row["text"].split())) <= 1 for row in rows)  # the one-token writer's texts
    before = list(decode_latents(open_latents(str(latents)), original, DecodeArgs(temperature=0.0)))
    assert [row["text"] for row in before] != [row["mbr_text"] for row in rows]  # (so this could fail)


def test_sample_refuses_an_autoencoder_of_another_latent_space(plain_run, other_ae, tmp_path):
    r = runner.invoke(app, ["sample", str(plain_run), "--num-samples", "2", "--autoencoder", str(other_ae),
                            "--out", str(tmp_path / "x.ldlm")])
    assert "defines latent space" in one_line_error(r, 2)
    assert not (tmp_path / "x.ldlm").exists()
