"""A frozen encoder's hidden states computed once per corpus (ldlm.autoencoder.states)."""

import numpy as np
import torch

from ldlm.autoencoder import AutoencoderConfig
from ldlm.autoencoder.states import encoder_states
from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
from ldlm.data import TextRows
from ldlm.progress import Reporter
from tests.conftest import CORPUS
from tests.test_autoencoder import minilm_folder


class Notes(Reporter):
    def __init__(self):
        self.lines = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def minilm():
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(minilm_folder()).eval(), AutoTokenizer.from_pretrained(minilm_folder())


def test_states_are_the_encoders_output_and_are_computed_once(tmp_path, monkeypatch):
    encoder, tok = minilm()
    ids = tok(list(CORPUS[:10]), truncation=True, max_length=24)["input_ids"]
    states = encoder_states(encoder, ids, tok.pad_token_id, folder=tmp_path)
    assert len(states) == 10 and states.flat.dtype == np.float16
    with torch.no_grad():
        for i in (0, 4, 9):
            want = encoder(input_ids=torch.tensor([ids[i]])).last_hidden_state[0]
            got, mask = states.batch([i])
            assert mask.sum() == len(ids[i])
            torch.testing.assert_close(got[0], want, atol=2e-2, rtol=2e-2)  # float16 on disk
    # a second run on the same texts reads the file: the encoder does not run
    monkeypatch.setattr(type(encoder), "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    notes = Notes()
    again = encoder_states(encoder, ids, tok.pad_token_id, notes, folder=tmp_path)
    assert again.path == states.path and "reusing" in notes.lines[0]
    np.testing.assert_array_equal(again.flat, states.flat)


def test_other_texts_or_weights_get_their_own_states(tmp_path):
    encoder, tok = minilm()
    ids = tok(list(CORPUS[:4]), truncation=True, max_length=24)["input_ids"]
    first = encoder_states(encoder, ids, tok.pad_token_id, folder=tmp_path)
    other = encoder_states(encoder, ids[:3], tok.pad_token_id, folder=tmp_path)
    with torch.no_grad():
        encoder.embeddings.word_embeddings.weight[5] += 1
    moved = encoder_states(encoder, ids, tok.pad_token_id, folder=tmp_path)
    assert len({first.path, other.path, moved.path}) == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary file left


def test_batches_of_cached_states_give_the_same_loss(tmp_path):
    from ldlm.autoencoder.train import build_autoencoder

    config = AutoencoderConfig(encoder_source=minilm_folder(), pooling="queries", size="tiny", max_length=24,
                               latent_noise=0.0)
    model = build_autoencoder(config, list(CORPUS))
    model.eval()
    texts = list(CORPUS[:6])
    ids = model.encoder_tokenizer(texts, truncation=True, max_length=24)["input_ids"]
    states = encoder_states(model.encoder, ids, model.encoder_tokenizer.pad_token_id, folder=tmp_path)
    batch = model.encoder_tokenizer(texts, truncation=True, max_length=24, padding=True, return_tensors="pt")
    dec = model.tokenize_for_decoder(texts)
    cached, mask = states.batch(range(6))
    with torch.no_grad():
        plain = model(batch["input_ids"], batch["attention_mask"], dec["input_ids"], dec["attention_mask"])
        fast = model(None, mask, dec["input_ids"], dec["attention_mask"], encoder_states=cached)
    torch.testing.assert_close(fast, plain, atol=1e-2, rtol=1e-2)


def test_training_with_a_frozen_encoder_runs_it_once_per_text(tmp_path, monkeypatch):
    from transformers import BertModel

    calls = {"texts": 0}
    forward = BertModel.forward

    def counted(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls["texts"] += ids.shape[0]
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(BertModel, "forward", counted)
    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    config = AutoencoderConfig(encoder_source=minilm_folder(), pooling="queries", size="tiny", max_length=24)
    train_autoencoder(rows, tmp_path / "cached", config, AutoencoderTrainArgs(max_steps=6, batch_size=8,
                                                                            eval_rows=0))
    cached = calls["texts"]
    calls["texts"] = 0
    train_autoencoder(rows, tmp_path / "plain", config, AutoencoderTrainArgs(
        max_steps=6, batch_size=8, eval_rows=0, cache_encoder_states=False))
    assert cached == len(CORPUS)  # each text once, for the cache; no step runs the encoder
    assert calls["texts"] == 6 * 8  # without the cache, every step runs it
