"""ldlm evaluate: every metric on inputs small enough to check by hand, the protocol, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.cli import app
from ldlm.errors import InputError
from ldlm.evaluate import (
    Evaluation,
    Sources,
    corpus_bleu,
    distinct_n,
    diversity,
    evaluate_sources,
    evaluate_texts,
    frechet_distance,
    mauve_from_features,
    memorisation,
    perplexity,
    text_features,
    tokenize,
)
from ldlm.evaluate.protocol import ROWS
from ldlm.latent_file import LatentHeader, write_latent_file
from tests.conftest import one_line_error

runner = CliRunner()

TWO = ["the cat sat on the mat", "the cat sat on a mat"]

# 60 distinct restaurant descriptions and 60 distinct texts about something else
NAMES = ["The Eagle", "Aromi", "The Mill", "Zizzi", "Cotto", "The Phoenix"]
FOODS = ["Italian", "French", "Chinese", "Indian", "English", "Japanese", "fast", "Thai", "Greek", "Spanish"]
RESTAURANTS = [f"{n} serves {f} food in the city centre near the river." for n in NAMES for f in FOODS]
PLACES = ["Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Quito"]
THINGS = ["a compiler", "the kernel", "a database", "the scheduler", "a parser", "the linker",
          "a debugger", "the allocator", "a profiler", "the loader"]
OTHER = [f"In {p} the engineers rewrote {t} because the build kept failing at night."
         for p in PLACES for t in THINGS]


def test_tokenize_modes():
    text = "Fast-food, £20 The EAGLE"
    assert tokenize(text) == ["fast", "-", "food", ",", "£", "20", "the", "eagle"]
    assert tokenize(text, "cased-words")[-2:] == ["The", "EAGLE"]
    assert tokenize(text, "whitespace") == ["Fast-food,", "£20", "The", "EAGLE"]


def test_distinct_n_and_diversity_by_hand():
    # unigrams: 12 tokens, 6 distinct (the cat sat on mat a) -> 0.5
    assert distinct_n(TWO, 1) == pytest.approx(6 / 12)
    # bigrams: 10, distinct 7 (the cat, cat sat, sat on, on the, the mat, on a, a mat)
    assert distinct_n(TWO, 2) == pytest.approx(7 / 10)
    # trigrams: 8, distinct 6; 4-grams: 6, distinct 5 ("the cat sat on" twice)
    assert distinct_n(TWO, 3) == pytest.approx(6 / 8)
    assert distinct_n(TWO, 4) == pytest.approx(5 / 6)
    # LD4LG diversity: 0.7 * 0.75 * 5/6 = 0.4375
    assert diversity(TWO) == pytest.approx(0.4375)
    assert diversity(["a b c d e", "f g h i j"]) == 1.0  # nothing repeats
    assert diversity(["a b"]) == 0.0  # no 4-gram at all: documented as 0
    # words lowercases and splits punctuation: "The cat." == "the cat ." twice -> 1 distinct bigram
    assert distinct_n(["The cat.", "the cat ."], 2) == pytest.approx(2 / 4)
    assert distinct_n(["The cat.", "the cat ."], 2, "whitespace") == pytest.approx(2 / 2)


def test_memorisation_and_copy_rate_by_hand():
    train = ["the cat sat on the mat", "a dog ran"]
    gen = ["the cat sat on a mat", " a dog ran ", "the cat sat on the mat"]
    # 4-grams: text 1 has 3 (only "the cat sat on" is in train), text 2 has none, text 3 has
    # 3, all in train: 4 of 6. Copies (after strip): texts 2 and 3 -> 2 of 3.
    assert memorisation(gen, train) == pytest.approx({"mem_4gram": 4 / 6, "copy_rate": 2 / 3})
    # lowercased word tokens find "The Cat sat on" in the training text; cased ones do not
    assert memorisation(["The Cat sat on"], train)["mem_4gram"] == 1.0
    assert memorisation(["The Cat sat on"], train, tokenize="cased-words")["mem_4gram"] == 0.0


def test_multi_reference_bleu_by_hand():
    import sacrebleu

    hyps = ["a b c d", "a b x d"]
    refs = [["a b c d"], ["a b x y", "q b x d"]]
    # matches, clipped against the best reference: 1-grams 8/8, 2-grams 6/6, 3-grams 4/4,
    # 4-grams 1/2 ("a b x d" is in neither reference); lengths 8 vs 8, so no brevity
    # penalty: BLEU = 100 * (1 * 1 * 1 * 1/2) ** (1/4) = 84.09
    assert corpus_bleu(hyps, refs) == pytest.approx(100 * 0.5 ** 0.25)
    direct = sacrebleu.corpus_bleu(hyps, [["a b c d", "a b x y"], [None, "q b x d"]]).score
    assert corpus_bleu(hyps, refs) == pytest.approx(direct)
    # brevity penalty: 4 words against 8 -> 100 * exp(1 - 8/4) = 36.79. Padding with "" instead
    # of None would add an empty reference, as close to 4 words as the real one (the tie goes
    # to the shorter), and lift the penalty: 100.
    assert corpus_bleu(["a b c d"], [["a b c d e f g h"]]) == pytest.approx(100 * math.exp(-1))
    assert sacrebleu.corpus_bleu(["a b c d"], [["a b c d e f g h"], [""]]).score == pytest.approx(100)
    with pytest.raises(ValueError):
        corpus_bleu(hyps, refs[:1])


def test_frechet_distance_by_hand():
    # 1-D: means 1 and 2, variances 2 and 2 -> (1-2)^2 + 2 + 2 - 2*sqrt(2*2) = 1
    assert frechet_distance([[0.0], [2.0]], [[1.0], [3.0]]) == pytest.approx(1.0)
    a = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], float)
    # b = 2a + 1: mean gap (2, 2) -> 8; covariances 4/3 I and 16/3 I ->
    # 2 * (sqrt(4/3) - sqrt(16/3))^2 = 8/3
    assert frechet_distance(a, 2 * a + 1) == pytest.approx(8 + 8 / 3)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A tiny random GPT-2 with a byte-level BPE tokenizer, saved as a hub-style folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ldlm.autoencoder.tokenizer import train_tokenizer

    torch.manual_seed(0)
    tok = train_tokenizer(RESTAURANTS + OTHER, vocab_size=300)
    config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    out = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


def test_perplexity_is_exp_of_mean_token_nll(tiny_gpt2):
    import torch

    path, model, tok = tiny_gpt2
    texts = ["The Eagle serves Thai food.", "In Oslo the engineers rewrote a parser at night again."]
    nll, count = 0.0, 0
    for text in texts:  # the model's own loss, one text at a time: mean NLL of tokens 2..T
        ids = torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        nll += loss * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert perplexity(texts, str(path), batch_size=2) == pytest.approx(math.exp(nll / count), rel=1e-5)
    res = evaluate_texts(texts, ppl_model=str(path), mauve_features=None, seeds=1)
    assert res.summary("model", "perplexity")[0] == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_causal_lm_features_take_the_last_real_token(tiny_gpt2):
    path = str(tiny_gpt2[0])
    texts = ["The Mill serves Greek food.", "a", "In Lima the engineers rewrote the linker."]
    together = text_features(texts, path, batch_size=3)
    alone = np.concatenate([text_features([t], path, batch_size=1) for t in texts])
    assert together.shape == (3, 16)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_minilm_features_and_mauve():
    feats = text_features(RESTAURANTS[:4] + ["a"], "minilm", batch_size=2)
    assert feats.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)  # L2-normalised
    p = text_features(RESTAURANTS, "minilm")
    q = text_features(OTHER, "minilm")
    same = mauve_from_features(p, p, seed=0)
    apart = mauve_from_features(p, q, seed=0)
    assert same > 0.99 and apart < 0.2, (same, apart)
    assert mauve_from_features(p, q, seed=0) == apart  # seeded: deterministic


def test_protocol_rows_repeats_and_reference_row():
    refs = [f"{t} ({i})" for i, t in enumerate(RESTAURANTS)]  # 60 distinct
    gen = RESTAURANTS[:30]
    res = evaluate_texts(gen, refs, train_texts=RESTAURANTS[:10], num_samples=20, seeds=[0, 1, 2],
                         mauve_features=None)
    assert res.num_samples == 20 and res.seeds == [0, 1, 2]
    assert set(res.rows) == {"model", "reference"}
    assert len(res.rows["model"]["diversity"]) == 3
    # the reference texts are never copies of training texts; a third of the generated are
    assert res.summary("reference", "copy_rate") == (0.0, 0.0)
    assert 0.0 < res.summary("model", "copy_rate")[0] < 1.0
    assert res.summary("model", "copy_rate")[1] > 0.0  # different subsets per seed
    d = res.as_dict()
    assert d["rows"]["model"]["mem_4gram"]["values"] == res.rows["model"]["mem_4gram"]
    assert Evaluation.from_dict(json.loads(json.dumps(d))).as_dict() == d  # JSON round trip
    # default N: every generated text, at most half of the references (the other half is the row)
    assert evaluate_texts(gen, refs, mauve_features=None, seeds=1).num_samples == 30
    assert evaluate_texts(gen, refs[:40], mauve_features=None, seeds=1).num_samples == 20
    assert evaluate_texts(gen, refs[:40], mauve_features=None, seeds=1,
                          reference_row=False).num_samples == 30
    short = evaluate_texts(gen, refs[:45], num_samples=30, seeds=1, mauve_features=None)
    assert "reference" not in short.rows and "needs 60 references" in short.notes[0]
    with pytest.raises(InputError, match="--num-samples 40 but GENERATED holds only 30"):
        evaluate_texts(gen, refs, num_samples=40, mauve_features=None)
    with pytest.raises(InputError, match="empty"):
        evaluate_texts([], refs)


def test_the_training_texts_three_gram_model_scores_fluency_without_minilm():
    from ldlm.fluency import NgramLM

    train = RESTAURANTS[:40]
    scrambled = [" ".join(reversed(t.split())) for t in RESTAURANTS[40:60]]
    fluent = evaluate_texts(RESTAURANTS[40:60], OTHER, train_texts=train, num_samples=20, seeds=1,
                            mauve_features=None, reference_row=False)
    garbled = evaluate_texts(scrambled, OTHER, train_texts=train, num_samples=20, seeds=1,
                             mauve_features=None, reference_row=False)
    ppl = fluent.summary("model", "train_lm_ppl")[0]
    assert ppl == pytest.approx(NgramLM.fit(train, order=3).perplexity(RESTAURANTS[40:60]))
    assert garbled.summary("model", "train_lm_ppl")[0] > 2 * ppl  # word order matters to it
    assert evaluate_texts(RESTAURANTS[40:60], OTHER, num_samples=20, seeds=1, mauve_features=None,
                          reference_row=False).summary("model", "train_lm_ppl") is None  # no training texts


def test_protocol_mauve_and_paired_bleu():
    res = evaluate_texts(RESTAURANTS[:20], RESTAURANTS[20:50], seeds=2, num_samples=15,
                         paired_references=[[t] for t in RESTAURANTS[:20]])
    assert "all-MiniLM-L6-v2" in res.mauve_features
    assert 0.0 <= res.summary("model", "mauve")[0] <= 1.0
    # 30 references = 15 for the yardstick + 15 for the reference row
    assert len(res.rows["model"]["mauve"]) == 2 and len(res.rows["reference"]["mauve"]) == 2
    assert res.bleu["bleu"] == pytest.approx(100.0) and res.bleu["pairs"] == 20


def test_each_repeat_draws_the_documented_texts():
    """Seed s draws N generated texts, then a random order of the references (the yardstick,
    then the reference row): the rows score exactly those texts, seed for seed."""
    refs = [f"{t} ({i})" for i, t in enumerate(RESTAURANTS)]
    gen, train = RESTAURANTS[:30], RESTAURANTS[:10]
    res = evaluate_texts(gen, refs, train, num_samples=20, seeds=[0, 1, 2], mauve_features=None)
    for k, s in enumerate([0, 1, 2]):
        rng = np.random.default_rng(s)
        model = [gen[i] for i in np.sort(rng.choice(len(gen), 20, replace=False))]
        row = [refs[i] for i in rng.permutation(len(refs))[20:40]]
        assert res.rows["model"]["copy_rate"][k] == memorisation(model, train)["copy_rate"]
        assert res.rows["model"]["diversity"][k] == diversity(model)
        assert res.rows["reference"]["diversity"][k] == diversity(row)


def test_a_new_reading_and_metric_are_one_entry_each(monkeypatch):
    """A model-based metric is a reading (what the model makes of each text, read once per
    text) and a metric that names it; it is measured only where the evaluation has the model."""
    from ldlm.evaluate import Evaluator, Metric, Reading, registry

    calls = []

    def count_chars(model, texts, settings):
        calls.append(list(texts))
        return [len(t) * model for t in texts]

    monkeypatch.setattr(registry, "READINGS", (*registry.READINGS, Reading("chars", ROWS, count_chars)))
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, Metric(
        "mean_chars", "chars", lambda r: float(np.mean(r.inputs["chars"])), needs=("chars",))))
    refs = [f"{t} ({i})" for i, t in enumerate(RESTAURANTS)]
    kw = dict(num_samples=10, seeds=[0, 1, 2], reference_row=True, tokenize="words", num_buckets="auto",
              batch_size=8, device="cpu")
    ev = Evaluator(RESTAURANTS[:30], refs, models={"chars": 2}, **kw)
    rows = ev.run()[0]
    for k, draws in enumerate(ev.draws):
        model = [RESTAURANTS[i] for i in draws[0]["model"]]
        assert rows["model"]["mean_chars"][k] == 2 * np.mean([len(t) for t in model])
    assert "mean_chars" in rows["reference"] and "accuracy" not in rows["model"]  # no classifier
    # one call per pool, each drawn text once
    assert [len(c) for c in calls] == [len({int(i) for d in ev.draws for i in d[0][part]})
                                       for part in ROWS]
    assert "mean_chars" not in Evaluator(RESTAURANTS[:30], refs, models={}, **kw).run()[0]["model"]
    # the public functions pass the model on
    assert evaluate_texts(RESTAURANTS[:30], refs, num_samples=10, seeds=[0, 1, 2], mauve_features=None,
                          models={"chars": 2}).rows == rows


def test_feature_cache_featurises_each_text_once(monkeypatch):
    """Scoring many sets against one yardstick with one cache: the same figures, and every text
    (yardstick or generated) featurised once."""
    from ldlm.evaluate import models

    seen = []
    real = models.text_features

    def counting(texts, *args, **kwargs):
        seen.extend(texts)
        return real(texts, *args, **kwargs)

    kw = dict(seeds=[3, 4], num_samples=10)
    plain = [evaluate_texts(g, RESTAURANTS[20:50], **kw) for g in (RESTAURANTS[:12], OTHER[:12])]
    monkeypatch.setattr(models, "text_features", counting)
    cache = {}
    cached = [evaluate_texts(g, RESTAURANTS[20:50], feature_cache=cache, **kw)
              for g in (RESTAURANTS[:12], OTHER[:12])]
    assert [c.rows for c in cached] == [p.rows for p in plain]
    assert len(seen) == len(set(seen)) == len(cache)  # no text featurised twice


# ---- the command line -------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    gen = tmp_path / "gen.txt"
    gen.write_text("\n".join(RESTAURANTS[:30]) + "\n")
    refs = tmp_path / "refs.txt"
    refs.write_text("\n".join(f"{t} ({i})" for i, t in enumerate(RESTAURANTS)) + "\n")
    train = tmp_path / "train.txt"
    train.write_text("\n".join(RESTAURANTS[:10]) + "\n")
    return gen, refs, train


def test_cli_json_and_stdin(files):
    gen, refs, train = files
    args = ["--references", str(refs), "--train", str(train), "--mauve-features", "none",
            "--seeds", "2", "--num-samples", "20", "--format", "json"]
    r = runner.invoke(app, ["evaluate", str(gen), *args])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["num_samples"] == 20 and set(out["rows"]) == {"model", "reference"}
    piped = runner.invoke(app, ["evaluate", "-", *args], input=gen.read_text())
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout)["rows"] == out["rows"]
    # the command as a library function: the same figures from Python
    res = evaluate_sources(Sources(str(gen), references=str(refs), train=str(train)), "cpu",
                           mauve_features="none", seeds=2, num_samples=20)
    assert res.as_dict()["rows"] == out["rows"]
    assert out["inputs"] == Sources(str(gen), references=str(refs), train=str(train)).record()


def test_cli_table_names_every_figure(files, tmp_path):
    gen, refs, train = files
    r = runner.invoke(app, ["evaluate", str(gen), "--references", str(refs), "--train", str(train),
                            "--seeds", "1", "--num-samples", "20", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.stderr
    for label in ("MAUVE (all-MiniLM-L6-v2", "Div (words tokens)", "Mem (4-grams in train",
                  "Copy rate",
                  "generated", "human reference"):
        assert label in r.stdout
    assert json.loads((tmp_path / "e.json").read_text())["mauve_features"].startswith("all-MiniLM")


def test_cli_paired_bleu_from_jsonl_and_groups(tmp_path):
    import csv

    data = tmp_path / "e2e.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mr", "ref"])
        w.writerows([["m1", "a b c d"], ["m2", "a b x y"], ["m2", "q b x d"]])
    gen = tmp_path / "gen.jsonl"
    gen.write_text('{"text": "a b x d", "condition": "m2"}\n{"text": "a b c d", "condition": "m1"}\n')
    r = runner.invoke(app, ["evaluate", str(gen), "--references", str(data), "--column", "ref",
                            "--paired", "--group-column", "mr", "--mauve-features", "none",
                            "--no-reference-row", "--seeds", "1", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["bleu"]["bleu"] == pytest.approx(100 * 0.5 ** 0.25)
    decoded = tmp_path / "decoded.jsonl"  # `ldlm decode --format jsonl` of a store
    decoded.write_text('{"index": 0, "text": "a b c d", "reference": "a b c d"}\n'
                       '{"index": 1, "text": "a b c", "reference": "a b c"}\n')
    r = runner.invoke(app, ["evaluate", str(decoded), "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["bleu"]["bleu"] == pytest.approx(100.0)


def test_cli_latent_frechet_distance(tmp_path, files):
    gen = files[0]
    rng = np.random.default_rng(0)
    a, b, c = tmp_path / "a.ldlm", tmp_path / "b.ldlm", tmp_path / "c.ldlm"
    write_latent_file(a, LatentHeader("space-1", (2, 3), None), rng.normal(size=(40, 2, 3)).astype("f4"))
    write_latent_file(b, LatentHeader("space-1", (2, 3), None), rng.normal(size=(50, 2, 3)).astype("f4"))
    write_latent_file(c, LatentHeader("space-2", (2, 3), None), rng.normal(size=(50, 2, 3)).astype("f4"))
    r = runner.invoke(app, ["evaluate", str(gen), "--latents", str(a), "--reference-latents", str(b),
                            "--format", "json"])
    assert r.exit_code == 0, r.stderr
    fd = json.loads(r.stdout)["latent_fd"]
    assert fd["latents"] == 40 and fd["reference_latents"] == 50 and fd["fd"] > 0
    r = runner.invoke(app, ["evaluate", str(gen), "--latents", str(a), "--reference-latents", str(c)])
    assert "latent space" in one_line_error(r, 2)


def test_cli_errors_are_one_line(tmp_path, files):
    gen, refs, _ = files
    r = runner.invoke(app, ["evaluate", str(tmp_path / "missing.txt")])
    assert "does not exist" in one_line_error(r, 2)
    r = runner.invoke(app, ["evaluate", "-"], input="\n\n")
    assert "holds no text" in one_line_error(r, 2)
    r = runner.invoke(app, ["evaluate", str(gen), "--references", str(refs), "--num-samples", "100",
                            "--mauve-features", "none"])
    line = one_line_error(r, 2)
    assert "--num-samples 100" in line and "only 30" in line
    r = runner.invoke(app, ["evaluate", str(gen), "--references", str(refs),
                            "--mauve-features", "no-such-org/no-such-model"])
    line = one_line_error(r, 2)
    assert "no-such-org/no-such-model" in line and "network" in line
    r = runner.invoke(app, ["evaluate", "--help"])
    assert r.exit_code == 0 and "MAUVE" in r.stdout
