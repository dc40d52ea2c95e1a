"""Lengths from the data: --max-length measured on the corpus (and what a given one cuts), and
the decoder's positions cover what decode may be asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ldlm.autoencoder import AutoencoderConfig, load_autoencoder
from ldlm.autoencoder.lengths import Lengths
from ldlm.autoencoder.train import build_autoencoder
from ldlm.cli import app
from ldlm.errors import InputError
from tests.conftest import CORPUS, one_line_error

runner = CliRunner()
# texts of 1 to 100 words: one long tail the 99th percentile leaves out
VARIED = [" ".join(["word"] * n) for n in range(1, 101)] * 3


class Logs:
    def __init__(self):
        self.lines = []

    def log(self, message):
        self.lines.append(message)


def test_lengths_suggest_the_99th_percentile_in_multiples_of_8():
    lengths = Lengths(np.arange(1, 1001), 1000)
    assert lengths.suggested(limit=10**6) == 992  # 990.01 rounded up to a multiple of 8
    assert lengths.truncated(992) == pytest.approx(0.008)
    assert lengths.suggested() == 512 and lengths.suggested(limit=128) == 128  # the caps
    assert "0.8% of texts are longer" in lengths.describe(992, given=False)
    assert lengths.describe(100, given=True).startswith("warning:")  # 90% cut
    assert not lengths.describe(992, given=True).startswith("warning:")


def test_max_length_is_measured_when_not_given():
    logs = Logs()
    model = build_autoencoder(AutoencoderConfig(size="tiny"), VARIED, logs)
    needed = np.array([n + 2 for n in range(1, 101)] * 3)  # bos + words + eos (one token a word)
    n = model.config.max_length
    assert n % 8 == 0 and np.mean(needed > n) <= 0.01 and np.mean(needed > n - 8) > 0.01
    assert "99th percentile of 300 texts" in logs.lines[0], logs.lines
    # the decoder's positions cover the latent prefix, bos and twice the length
    prefix = 0 if model.cross_attention else model.config.latent_tokens  # positions the latents take
    assert model.decoder.config.n_positions == prefix + 1 + 2 * n


def test_a_given_max_length_that_cuts_warns():
    logs = Logs()
    model = build_autoencoder(AutoencoderConfig(size="tiny", max_length=16), VARIED, logs)
    assert model.config.max_length == 16
    assert logs.lines[0].startswith("warning: max length 16 tokens (given by --max-length")
    assert "86.0% of texts are longer" in logs.lines[0], logs.lines  # 86 of 100 lengths exceed 16


def test_decode_defaults_to_the_training_length_and_refuses_past_the_positions(tiny_ae):
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:2])
    assert len(model.generate(z)) == 2  # default: the autoencoder's max_length, within its positions
    cap = model.max_new_tokens
    prefix = 0 if model.cross_attention else model.config.latent_tokens  # positions the latents take
    assert cap == model.decoder.config.n_positions - prefix - 1
    model.generate(z, max_new_tokens=cap)  # the last position is usable
    with pytest.raises(InputError, match=f"--max-new-tokens {cap + 1} is more than .* at most {cap}"):
        model.generate(z, max_new_tokens=cap + 1)


def test_cli_decode_past_the_positions_is_one_line(tiny_ae, tiny_store):
    big = load_autoencoder(tiny_ae).max_new_tokens + 1
    r = runner.invoke(app, ["decode", str(tiny_store), "--autoencoder", str(tiny_ae),
                            "--max-new-tokens", str(big)])
    assert f"--max-new-tokens {big} is more than" in one_line_error(r, 2)
    r = runner.invoke(app, ["decode", str(tiny_store), "--autoencoder", str(tiny_ae)])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == len(CORPUS), r.stderr


def test_generated_texts_respect_max_new_tokens(tiny_ae):
    model = load_autoencoder(tiny_ae)
    torch.manual_seed(0)
    z = torch.randn(3, *model.latent_shape)
    texts = model.generate(z, max_new_tokens=3, temperature=1.0, generator_seed=0)
    ids = model.decoder_tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert all(len(i) <= 4 for i in ids)  # 3 tokens (a byte-level merge may re-split one)
