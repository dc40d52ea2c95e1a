"""The condition classifier: n-gram features, training on a store, log p(condition | text),
its saved folder, and its command."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.classifier import (
    ClassifierArgs,
    ConditionClassifier,
    build_ngram_vocab,
    text_ngrams,
    train_classifier,
)
from ldlm.cli import app
from ldlm.conditions import ConditionSpec
from ldlm.errors import InputError, RuntimeFailure
from ldlm.store import LatentStore
from tests.conftest import one_line_error

runner = CliRunner()
FOODS = ["Thai", "Italian", "French", "Indian"]
AREAS = ["riverside", "city centre"]
FAST = ClassifierArgs(epochs=30, batch_size=32, learning_rate=0.05, weight_decay=0.0, min_count=1)


def _store(path, texts: list[str], conditions: list[str], ctype: str) -> str:
    """A store of fake latents with real texts and conditions (the classifier reads only those)."""
    spec = ConditionSpec.build(conditions, "mr", ctype)
    store = LatentStore.create(str(path), rows=len(texts), latent_shape=(1, 2), chunk_rows=64,
                               attributes={"latent_space": "fake", "condition": spec.to_dict()})
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, np.zeros((b - a, 1, 2), "f4"), texts[a:b], np.zeros(b - a),
                          spec.encode(conditions[a:b]), conditions[a:b])
    store.finalize()
    return str(path)


def _restaurants(repeats: int = 12) -> tuple[list[str], list[str]]:
    """MRs food[F], area[A] and texts that state both in a few wordings, shuffled."""
    wordings = ["{f} food in the {a} area.", "A {f} place by the {a}.", "In the {a} you get {f} dishes."]
    rows = [(w.format(f=f, a=a), f"food[{f}], area[{a}]")
            for f, a, w in itertools.product(FOODS, AREAS, wordings)] * repeats
    order = np.random.default_rng(0).permutation(len(rows))
    return [rows[i][0] for i in order], [rows[i][1] for i in order]


@pytest.fixture(scope="module")
def mr_store(tmp_path_factory) -> str:
    texts, mrs = _restaurants()
    return _store(tmp_path_factory.mktemp("clf") / "mr.zarr", texts, mrs, "text")


@pytest.fixture(scope="module")
def mr_classifier(tmp_path_factory, mr_store):
    out = tmp_path_factory.mktemp("clf") / "mr_clf"
    return out, train_classifier(mr_store, out, FAST)


def test_ngrams_are_lower_cased_word_ngrams_counted_once():
    assert text_ngrams("The cat, the CAT", 2) == {"the", "cat", ",", "the cat", "cat ,", ", the"}
    vocab = build_ngram_vocab(["a b", "a c", "a b"], order=1, min_count=2, max_size=10)
    assert vocab == ["a", "b"]  # most frequent first; 'c' is in one text only
    assert build_ngram_vocab(["a b", "a b"], 2, 1, max_size=1) == ["a"]


def test_text_conditions_are_learned_and_scored(mr_classifier):
    out, result = mr_classifier
    assert result.eval_rows == 14 and result.train_rows == 288 - 14
    assert result.precision > 0.95 and result.recall > 0.95 and result.accuracy > 0.9
    model = result.model
    mr = "food[Thai], area[riverside]"
    cond = model.spec.encode([mr] * 3)
    ll = model.log_likelihood(["Thai food in the riverside area.", "Thai food here.",
                               "Italian food in the riverside area."], cond)
    # stating both values beats leaving one out, which beats stating another value
    assert ll[0] > ll[1] > ll[2]
    assert ll[0] > -1.0  # a text that states its MR is likely under the classifier


def test_label_conditions_are_learned_and_scored(tmp_path):
    texts, labels = [], []
    for i in range(120):
        food = FOODS[i % 4]
        texts.append(f"we serve {food.lower()} dishes number {i}")
        labels.append("asian" if food in ("Thai", "Indian") else "european")
    result = train_classifier(_store(tmp_path / "lab.zarr", texts, labels, "label"), tmp_path / "c", FAST)
    assert result.accuracy == 1.0 and result.precision is None
    model = result.model
    ll = model.log_likelihood(["we serve thai dishes", "we serve french dishes"],
                              model.spec.encode(["asian", "asian"]))
    assert ll[0] > np.log(0.9) > ll[1]


def test_saved_folder_round_trip(mr_classifier):
    out, result = mr_classifier
    assert {"config.json", "ngrams.json", "ldlm_classifier.json", "fluency_lm.json"} <= {
        p.name for p in out.iterdir()}
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    loaded = ConditionClassifier.from_pretrained(out)
    texts = ["Indian food in the city centre area.", "nothing known here"]
    cond = loaded.spec.encode(["food[Indian], area[city centre]"] * 2)
    np.testing.assert_allclose(loaded.log_likelihood(texts, cond),
                               result.model.log_likelihood(texts, cond), rtol=1e-6)
    assert loaded.spec.to_dict() == result.model.spec.to_dict()
    meta = json.loads((out / "ldlm_classifier.json").read_text())
    assert meta["train_rows"] == result.train_rows and meta["training"]["epochs"] == FAST.epochs
    np.testing.assert_array_equal(loaded.fluency(texts), result.model.fluency(texts))
    assert meta["perplexity"] == pytest.approx(result.perplexity)


def test_fluency_model_of_the_training_texts(mr_classifier):
    _, result = mr_classifier
    # the held-out texts are wordings seen in training: a low perplexity, and a wording of the
    # store reads better than its words shuffled
    assert 1 < result.perplexity < 3
    fluent, shuffled = result.model.fluency(["Thai food in the riverside area.",
                                             "area food the Thai riverside in."])
    assert fluent > shuffled


def test_no_fluency_model_with_lm_order_0(tmp_path, mr_store):
    result = train_classifier(mr_store, tmp_path / "c", ClassifierArgs(epochs=1, min_count=1, lm_order=0))
    assert result.perplexity is None and not (tmp_path / "c" / "fluency_lm.json").exists()
    loaded = ConditionClassifier.from_pretrained(tmp_path / "c")
    with pytest.raises(InputError, match="has no language model.*--fluency-weight 0"):
        loaded.fluency(["Thai food."])


def test_damaged_and_missing_folders(tmp_path, mr_classifier):
    out, _ = mr_classifier
    with pytest.raises(InputError, match="does not exist or holds no config.json"):
        ConditionClassifier.from_pretrained(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in out.iterdir():
        if p.name != "ngrams.json":
            (broken / p.name).write_bytes(p.read_bytes())
    (broken / "ngrams.json").write_text('["only one"]')
    with pytest.raises(RuntimeFailure, match="damaged, retrain it"):
        ConditionClassifier.from_pretrained(broken)


def test_out_is_kept_unless_overwrite(tmp_path, mr_store):
    out = tmp_path / "clf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty; pass --overwrite"):
        train_classifier(mr_store, out, FAST)
    assert (out / "keep.txt").read_text() == "mine"
    train_classifier(mr_store, out, FAST, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()


@pytest.mark.parametrize("kw,needle", [
    ({"epochs": 0}, "--epochs 0"), ({"min_count": 0}, "--min-count 0"),
    ({"learning_rate": 0.0}, "--learning-rate 0.0"), ({"weight_decay": -1.0}, "--weight-decay -1.0"),
    ({"lm_order": -1}, "--lm-order -1"),
])
def test_bad_arguments(kw, needle):
    with pytest.raises(InputError, match=needle):
        ClassifierArgs(**kw).check()


def test_cli_train_classifier(tmp_path, mr_store):
    r = runner.invoke(app, ["train-classifier", mr_store, "--out", str(tmp_path / "c"), "--epochs", "5",
                            "--min-count", "1"])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"saved {tmp_path / 'c'}") and "held-out on 14 rows" in lines[1]
    assert lines[2].startswith("fluency model (3-grams): held-out perplexity")
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "c"), "--json"]).stdout)
    assert info["kind"] == "condition classifier" and info["train_rows"] == 288 - 14
    assert info["condition"] == "mr (text, up to 2 tokens)" and info["store"] == mr_store
    assert info["fluency_model"] == "3-grams" and info["fluency_held_out_perplexity"] > 1


def test_cli_store_without_conditions(tmp_path, tiny_store):
    r = runner.invoke(app, ["train-classifier", str(tiny_store), "--out", str(tmp_path / "c")])
    assert "has no conditions" in one_line_error(r, 2)
    assert not (tmp_path / "c").exists()


def test_cli_min_count_too_high(tmp_path, mr_store):
    r = runner.invoke(app, ["train-classifier", mr_store, "--out", str(tmp_path / "c"),
                            "--min-count", "100000"])
    assert "lower --min-count" in one_line_error(r, 2)
