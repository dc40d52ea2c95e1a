"""The quality levers of issue 29: per-text latent noise, decoder and encoder depth, x0
projection onto the latents' sphere while sampling, and best-of-n decoding."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ldlm.autoencoder import AutoencoderConfig, load_autoencoder
from ldlm.autoencoder.train import build_autoencoder
from ldlm.cli import app
from ldlm.decode import DecodeArgs, _generate
from ldlm.diffusion import Diffusion
from ldlm.errors import InputError
from ldlm.sample import sample_latents
from ldlm.schedulers import make_noise_scheduler
from ldlm.train import train_diffusion
from tests.conftest import CORPUS, one_line_error
from tests.test_train_sample import args, make_store

runner = CliRunner()


def tiny(**kw) -> AutoencoderConfig:
    return AutoencoderConfig(size="tiny", max_length=24, latent_tokens=4, latent_dim=16, **kw)


def test_latent_noise_max_draws_one_level_per_text_in_training_only():
    model = build_autoencoder(tiny(latent_noise=0.2, latent_noise_max=0.9), list(CORPUS))
    z = torch.zeros(4096, 4, 16)
    model.train()
    std = model.latent_noise_std(z)
    assert std.shape == (4096, 1, 1)
    assert 0.2 <= float(std.min()) < 0.25 and 0.85 < float(std.max()) <= 0.9  # spans the range
    model.eval()
    assert model.latent_noise_std(z) == 0.2  # evaluation reads the fixed level
    assert model.latent_noise_std(z, 0.0) == 0.0  # an explicit level wins


def test_latent_noise_max_below_the_level_is_refused():
    with pytest.raises(InputError, match="--latent-noise-max 0.1 must be at least --latent-noise 0.3"):
        tiny(latent_noise=0.3, latent_noise_max=0.1).check()


def test_layers_override_the_size_and_survive_a_save(tmp_path):
    model = build_autoencoder(tiny(encoder_layers=1, decoder_layers=5), list(CORPUS))
    assert model.decoder.config.n_layer == 5 and model.encoder.config.num_hidden_layers == 1
    model.save_pretrained(tmp_path / "ae")
    again = load_autoencoder(tmp_path / "ae")
    assert again.decoder.config.n_layer == 5 and again.config.decoder_layers == 5
    with pytest.raises(InputError, match="--decoder-layers 0"):
        tiny(decoder_layers=0).check()


def test_cross_attention_reads_the_latents_in_every_layer_without_a_prefix(tmp_path):
    model = build_autoencoder(tiny(latent_injection="cross-attention"), list(CORPUS)).eval()
    blocks = model.decoder.transformer.h
    assert all(hasattr(block, "crossattention") for block in blocks)
    assert model.decoder.config.n_positions == 1 + 2 * 24  # no positions spent on a prefix
    assert model.max_new_tokens == 2 * 24
    z = torch.randn(3, 4, 16)
    batch = model.tokenize_for_decoder(["the cat sat", "a dog ran far", "x"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        logits = model._next_token_logits(z, ids, mask)
        assert logits.shape[:2] == (3, ids.shape[1] - 1)
        moved = model._next_token_logits(z + 1.0, ids, mask)
    assert not torch.allclose(logits, moved)  # the latents reach the text through cross-attention
    model.save_pretrained(tmp_path / "ae")
    again = load_autoencoder(tmp_path / "ae")
    assert again.config.latent_injection == "cross-attention"
    with torch.no_grad():
        torch.testing.assert_close(again._next_token_logits(z, ids, mask), logits)


@pytest.mark.parametrize("injection", ["prefix", "cross-attention"])
def test_greedy_generation_agrees_with_teacher_forcing(injection):
    """The cached, step-by-step decode picks at every step the token that the full teacher-forced
    pass ranks first: the latents reach generation as they reach training."""
    torch.manual_seed(0)
    model = build_autoencoder(tiny(latent_injection=injection), list(CORPUS)).eval()
    for p in model.decoder.parameters():  # sharper than an untrained model's near-uniform logits
        p.data.mul_(4.0)
    z = torch.randn(4, 4, 16)
    tok = model.decoder_tokenizer
    rows = torch.full((4, 1), tok.bos_token_id)
    with torch.no_grad():  # the reference: greedy over full passes, no cache
        for _ in range(10):
            step = torch.cat([rows, rows[:, :1]], 1)  # a dummy last token: logits[:, -1] reads all of rows
            nxt = model._next_token_logits(z, step, torch.ones_like(step))[:, -1].argmax(-1)
            rows = torch.cat([rows, nxt[:, None]], 1)
    expected = []
    for row in rows[:, 1:].tolist():
        row = row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
        expected.append(tok.decode(row, skip_special_tokens=True).strip())
    assert model.generate(z, max_new_tokens=10) == expected


def _pretrained_decoder(folder, model_cls, config):
    from ldlm.autoencoder.tokenizer import train_tokenizer

    tok = train_tokenizer(list(CORPUS), 300)
    model_cls(config(vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_pretrained_decoder_keeps_its_weights_and_gains_cross_attention(tmp_path):
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = _pretrained_decoder(tmp_path / "gpt2", GPT2LMHeadModel, lambda **kw: GPT2Config(
        n_embd=32, n_layer=2, n_head=2, n_positions=64, **kw))
    model = build_autoencoder(tiny(decoder_source=str(folder), latent_injection="cross-attention"),
                              list(CORPUS))
    saved = load_file(folder / "model.safetensors")
    own = model.decoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items() if k in own)  # the LM's weights kept
    assert any("crossattention" in k for k in own) and not any("crossattention" in k for k in saved)


def test_cross_attention_needs_a_decoder_that_has_it(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM  # a causal LM with no cross-attention layers

    folder = _pretrained_decoder(tmp_path / "llama", LlamaForCausalLM, lambda **kw: LlamaConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **kw))
    config = tiny(decoder_source=str(folder), latent_injection="cross-attention")
    with pytest.raises(InputError, match="needs a decoder with cross-attention layers"):
        build_autoencoder(config, list(CORPUS))


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_output_for_inverts_predict_x0(objective):
    diffusion = Diffusion(make_noise_scheduler(objective=objective), objective)
    gen = torch.Generator().manual_seed(0)
    x_t, x0 = torch.randn(6, 4, 16, generator=gen), torch.randn(6, 4, 16, generator=gen)
    t = torch.tensor([0, 10, 200, 500, 900, 999])
    out = diffusion.output_for(x0, x_t, t)
    torch.testing.assert_close(diffusion.predict_x0(out, x_t, t), x0, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("levers")
    run = path / "run"
    train_diffusion(make_store(path / "fake.zarr"), run, args(objective="eps", max_steps=2))
    return run


@pytest.mark.parametrize("scheduler", ["ddim", "dpm-solver"])
def test_project_puts_samples_on_the_sphere(fake_run, scheduler, monkeypatch):
    import ldlm.diffusion

    seen = []  # the clean-latent estimates the sampler stepped with
    output_for = ldlm.diffusion.Diffusion.output_for
    monkeypatch.setattr(ldlm.diffusion.Diffusion, "output_for",
                        lambda self, x0, x_t, t: seen.append(x0) or output_for(self, x0, x_t, t))
    plain, _ = sample_latents(fake_run, num_samples=8, num_inference_steps=4, scheduler=scheduler)
    projected, header = sample_latents(fake_run, num_samples=8, num_inference_steps=4, scheduler=scheduler,
                                       project=True)
    # the fake store's latents have mean 1, std 2: an untrained run's samples are far off the sphere
    assert abs(plain.mean(-1)).max() > 0.1
    np.testing.assert_allclose(projected.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(projected.var(-1), 1, atol=1e-3)
    assert header.extra["project"] is True
    assert len(seen) == 4  # one projection per step, each onto the sphere in the store's units
    from ldlm.run import load_run

    standard = load_run(fake_run, "cpu").standard
    for x0 in seen:
        np.testing.assert_allclose(standard.inverse(x0).mean(-1), 0, atol=1e-4)


def test_best_of_keeps_the_likeliest_candidate(tiny_ae, monkeypatch):
    model = load_autoencoder(tiny_ae)
    drawn = {}
    generate = model.generate

    def recording(latents, **kw):
        drawn["texts"] = generate(latents, **kw)
        drawn["latents"] = latents
        return drawn["texts"]

    monkeypatch.setattr(model, "generate", recording)
    latents = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    chosen = _generate(model, latents, DecodeArgs(best_of=4, temperature=1.0), 1.0)
    assert drawn["latents"].shape[0] == 12  # four candidates per latent, side by side
    score = model.text_logprob(drawn["latents"], drawn["texts"]).reshape(3, 4)
    for i in range(3):
        candidates = drawn["texts"][4 * i:4 * i + 4]
        assert chosen[i] == candidates[int(score[i].argmax())]
        assert score[i].max() >= score[i].min()


def test_text_logprob_scores_each_text_alone(tiny_ae):
    model = load_autoencoder(tiny_ae)
    latents = model.encode_texts(list(CORPUS[:4]))
    greedy = model.generate(latents, temperature=0.0)
    other = [greedy[(i + 1) % 4] + " and then some more words" for i in range(4)]
    # a mean log-probability per token, the same for a text padded in a batch as alone
    both = model.text_logprob(torch.cat([latents, latents]), greedy + other)
    alone = model.text_logprob(latents[:1], greedy[:1])
    assert torch.isfinite(both).all() and (both <= 0).all()
    torch.testing.assert_close(both[:1], alone, atol=1e-4, rtol=1e-4)


def test_cli_refuses_best_of_without_sampling(tiny_store):
    result = runner.invoke(app, ["decode", str(tiny_store), "--best-of", "3", "--temperature", "0"])
    assert "--best-of 3" in one_line_error(result, 2)
    result = runner.invoke(app, ["decode", str(tiny_store), "--best-of", "0"])
    assert "--best-of 0 must be at least 1" in one_line_error(result, 2)


def test_cli_best_of_writes_one_text_per_latent(tiny_store):
    result = runner.invoke(app, ["decode", str(tiny_store), "--best-of", "3"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(CORPUS)


def test_checkpoints_of_versions_before_an_option_still_resume():
    """A run's identity leaves out options still at the value older versions had implicitly."""
    from ldlm.autoencoder.train import AutoencoderTrainArgs, _identity
    from ldlm.data import TextRows

    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    plain = _identity(tiny(latent_injection="prefix"), AutoencoderTrainArgs(), rows)["options"]
    assert not {"latent_injection", "latent_noise_max", "decoder_layers"} & set(plain)
    cross = _identity(tiny(latent_injection="cross-attention"), AutoencoderTrainArgs(), rows)["options"]
    assert cross["latent_injection"] == "cross-attention"


def test_an_autoencoder_saved_before_the_option_loads_as_the_prefix_decoder_it_was(tmp_path):
    import json

    model = build_autoencoder(tiny(latent_injection="prefix"), list(CORPUS))
    model.save_pretrained(tmp_path / "ae")
    path = tmp_path / "ae" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["latent_injection"]  # as a version before the option wrote it
    path.write_text(json.dumps(saved))
    again = load_autoencoder(tmp_path / "ae")
    assert again.config.latent_injection == "prefix" and not again.cross_attention
    assert AutoencoderConfig().latent_injection == "cross-attention"  # while new ones default to it
