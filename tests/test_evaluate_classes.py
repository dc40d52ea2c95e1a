"""Class-conditional evaluation (issue 22): per-class figures on a constructed case, the topic
classifier, the saved result, `ldlm evaluate --class-column`, and the one-line errors for
bad classes and bad conditions at sampling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.classifier import ClassifierArgs, train_classifier
from ldlm.cli import app
from ldlm.conditions import ConditionSpec
from ldlm.errors import InputError
from ldlm.evaluate import (
    ClassEvaluation,
    Sources,
    diversity,
    evaluate_classes,
    evaluate_sources,
    evaluate_texts,
    load_topic_classifier,
    memorisation,
)
from ldlm.store import LatentStore
from tests.conftest import one_line_error
from tests.test_evaluate import OTHER, RESTAURANTS

runner = CliRunner()
FAST = ClassifierArgs(epochs=30, batch_size=16, learning_rate=0.05, weight_decay=0.0, min_count=1,
                      lm_order=0, eval_rows=0)

# two classes of very different texts, 60 each: generated and references from the same halves
FOOD, CODE = "food", "Sci/Tech"
GEN = RESTAURANTS[0::2] + OTHER[0::2]  # 30 + 30
GEN_CLASSES = [FOOD] * 30 + [CODE] * 30
REFS = RESTAURANTS[1::2] + OTHER[1::2]
REF_CLASSES = [FOOD] * 30 + [CODE] * 30


class ByWord:
    """A topic classifier by hand: 'food' for texts that say food, else the other class."""

    def __init__(self, labels=(FOOD, CODE), always: str | None = None):
        self.labels, self.name, self.always = list(labels), "by word", always

    def predict(self, texts):
        return [self.always or (FOOD if "food" in t else CODE) for t in texts]


# ----- the library ---------------------------------------------------------------------------
def test_per_class_figures_by_hand():
    train = RESTAURANTS[:10]
    res = evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, train, classifier=ByWord(), seeds=2,
                           mauve_features=None, reference_row=False)
    # N: every generated text of the smallest class; pools of exactly N give the same texts per repeat
    assert res.classes == [FOOD, CODE] and res.num_samples == 30 and res.seeds == [0, 1]
    food = RESTAURANTS[0::2]
    assert res.summary(FOOD, "model", "diversity") == (pytest.approx(diversity(food)), 0.0)
    mem = memorisation(food, train_texts=train)
    assert res.summary(FOOD, "model", "copy_rate")[0] == pytest.approx(mem["copy_rate"]) == 5 / 30
    assert res.summary(CODE, "model", "copy_rate")[0] == 0.0
    assert res.summary(FOOD, "model", "accuracy") == (1.0, 0.0)
    assert res.summary(None, "model", "accuracy") == (1.0, 0.0)  # the mean over the classes
    assert res.ceiling == {"accuracy": 1.0, "texts": 60, "per_class": {FOOD: 1.0, CODE: 1.0}}
    assert "reference" not in res.rows[FOOD]  # --no-reference-row
    # a classifier that always says food: right on food, wrong on the rest, ceiling 0.5
    res = evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, classifier=ByWord(always=FOOD), seeds=1,
                           mauve_features=None)
    assert res.num_samples == 15  # half the class's 30 references: the other half is the human row
    assert res.summary(FOOD, "model", "accuracy")[0] == 1.0 == res.summary(FOOD, "reference", "accuracy")[0]
    assert res.summary(CODE, "model", "accuracy")[0] == 0.0
    assert res.summary(None, "model", "accuracy")[0] == 0.5 and res.ceiling["accuracy"] == 0.5
    assert res.counts[FOOD] == {"generated": 30, "references": 30, "other_references": 30}


def test_own_class_mauve_is_high_other_class_low_and_a_shuffle_is_caught():
    res = evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, classifier=ByWord(), seeds=1,
                           reference_row=False)
    assert "all-MiniLM-L6-v2" in res.mauve_features
    for cls in (FOOD, CODE):
        own, other = res.summary(cls, "model", "mauve")[0], res.summary(cls, "model", "mauve_other")[0]
        assert own > 0.8 and other < 0.1, (cls, own, other)
    # the samples of a model that ignores its condition: classes assigned at random
    shuffled = list(np.random.default_rng(0).permutation(GEN_CLASSES))
    bad = evaluate_classes(GEN, shuffled, REFS, REF_CLASSES, classifier=ByWord(), seeds=1,
                           reference_row=False)
    assert bad.summary(None, "model", "accuracy")[0] < 0.75
    assert bad.summary(None, "model", "mauve")[0] < res.summary(None, "model", "mauve")[0] - 0.3
    assert bad.summary(None, "model", "mauve_other")[0] > res.summary(None, "model", "mauve_other")[0]
    # serialisable: JSON and back
    d = res.as_dict()
    assert set(d["per_class"]) == {FOOD, CODE} and d["mean"]["model"]["accuracy"]["mean"] == 1.0
    again = ClassEvaluation.from_dict(json.loads(json.dumps(d)))
    assert again.as_dict() == d and str(again) == str(res)


def test_errors_name_the_class():
    with pytest.raises(InputError, match=r"generated text 2 asks for class 'Wrld'.*food, Sci/Tech"):
        evaluate_classes(GEN[:3], [FOOD, "Wrld", FOOD], REFS, REF_CLASSES, mauve_features=None)
    with pytest.raises(InputError, match=r"knows the classes food, Sports, not Sci/Tech"):
        evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, classifier=ByWord((FOOD, "Sports")),
                         mauve_features=None)
    with pytest.raises(InputError, match=r"--num-samples 20 but class 'food' has only 15 generated"):
        evaluate_classes(GEN[:15] + GEN[30:], GEN_CLASSES[:15] + GEN_CLASSES[30:], REFS, REF_CLASSES,
                         num_samples=20, mauve_features=None)
    with pytest.raises(InputError, match="60 generated texts but 2 classes"):
        evaluate_classes(GEN, [FOOD, CODE], REFS, REF_CLASSES)


def test_each_class_draws_the_documented_texts():
    """Per seed, class after class: a random order of the class's references (the yardstick,
    then the human row), then its N generated texts, then N references of the other classes."""
    train = RESTAURANTS[:10]
    res = evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, train, seeds=[3, 4], num_samples=12,
                           mauve_features=None)
    for k, s in enumerate([3, 4]):
        rng = np.random.default_rng(s)
        for c in (FOOD, CODE):
            own = [i for i, x in enumerate(REF_CLASSES) if x == c]
            order = rng.permutation(own)
            mine = [i for i, x in enumerate(GEN_CLASSES) if x == c]
            model = [GEN[i] for i in np.sort(rng.choice(mine, 12, replace=False))]
            rng.choice([i for i, x in enumerate(REF_CLASSES) if x != c], 12, replace=False)  # others
            assert res.rows[c]["model"]["copy_rate"][k] == memorisation(model, train)["copy_rate"]
            assert res.rows[c]["model"]["diversity"][k] == diversity(model)
            assert res.rows[c]["reference"]["diversity"][k] == diversity([REFS[i] for i in order[12:24]])


def test_a_class_scores_as_the_whole_set_protocol_scores_its_texts():
    """Per-class scoring is the same protocol over groups: drawn whole, a class's texts get the
    figures `evaluate_texts` gives them alone."""
    train = RESTAURANTS[:10]
    res = evaluate_classes(GEN, GEN_CLASSES, REFS, REF_CLASSES, train, num_samples=30, seeds=2,
                           mauve_features=None, reference_row=False)
    for c in (FOOD, CODE):
        texts = [t for t, x in zip(GEN, GEN_CLASSES, strict=True) if x == c]
        refs = [t for t, x in zip(REFS, REF_CLASSES, strict=True) if x == c]
        alone = evaluate_texts(texts, refs, train, num_samples=30, seeds=2, mauve_features=None,
                               reference_row=False)
        assert res.rows[c] == alone.rows  # every figure, seed for seed


# ----- the topic classifier ------------------------------------------------------------------
def _store(path, texts: list[str], conditions: list[str], ctype: str = "label") -> str:
    """A store of fake latents with real texts and conditions (the classifier reads only those)."""
    spec = ConditionSpec.build(conditions, "topic", ctype)
    store = LatentStore.create(str(path), rows=len(texts), latent_shape=(1, 2), chunk_rows=64,
                               attributes={"latent_space": "fake", "condition": spec.to_dict()})
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, np.zeros((b - a, 1, 2), "f4"), texts[a:b], np.zeros(b - a),
                          spec.encode(conditions[a:b]), conditions[a:b])
    store.finalize()
    return str(path)


@pytest.fixture(scope="module")
def topic_classifier(tmp_path_factory) -> str:
    """`ldlm train-classifier` on a store of the training texts and their classes."""
    out = tmp_path_factory.mktemp("clf") / "topic"
    train_classifier(_store(tmp_path_factory.mktemp("clf") / "s.zarr", GEN, GEN_CLASSES), out, FAST)
    return str(out)


def test_the_ngram_classifier_as_a_topic_classifier(topic_classifier, tmp_path):
    clf = load_topic_classifier(topic_classifier)
    assert sorted(clf.labels) == sorted([FOOD, CODE]) and "topic" in clf.name
    assert clf.predict(REFS) == REF_CLASSES  # held-out texts of the same two kinds
    texts_store = _store(tmp_path / "mr.zarr", GEN[:4], ["name[a]", "name[b]", "name[c]", "name[d]"], "text")
    train_classifier(texts_store, tmp_path / "mr", FAST)
    with pytest.raises(InputError, match="trained on conditioning texts.*not class labels"):
        load_topic_classifier(str(tmp_path / "mr"))


# ----- the command line ----------------------------------------------------------------------
@pytest.fixture
def class_files(tmp_path):
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps({"index": i, "text": t, "condition": c}) + "\n"
                           for i, (t, c) in enumerate(zip(GEN, GEN_CLASSES, strict=True))))
    refs = tmp_path / "test.csv"
    with open(refs, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "topic"])
        w.writerows(zip(REFS, REF_CLASSES, strict=True))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(RESTAURANTS[0:20:2]) + "\n")  # 10 of the generated, no reference
    return gen, refs, train


def test_cli_per_class_json_and_table(class_files, topic_classifier, tmp_path):
    gen, refs, train = class_files
    args = ["--references", str(refs), "--class-column", "topic", "--classifier", topic_classifier,
            "--train", str(train), "--seeds", "2"]
    r = runner.invoke(app, ["evaluate", "-", *args, "--mauve-features", "none", "--format", "json"],
                      input=gen.read_text())
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["classes"] == [FOOD, CODE] and out["num_samples"] == 15
    assert out["per_class"][FOOD]["model"]["accuracy"]["mean"] == 1.0
    assert out["ceiling"]["accuracy"] == 1.0 and out["ceiling"]["texts"] == 60
    assert out["mean"]["reference"]["copy_rate"]["mean"] == 0.0
    assert out["inputs"]["class_column"] == "topic"
    r = runner.invoke(app, ["evaluate", str(gen), *args, "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.stderr
    for label in ("MAUVE (own)", "MAUVE (others)", "Class acc.", "Copy rate", FOOD, CODE, "mean",
                  "generated", "human", "the ceiling): 1.000"):
        assert label in r.stdout, label
    saved = ClassEvaluation.from_dict(json.loads((tmp_path / "e.json").read_text()))
    assert saved.summary(FOOD, "model", "mauve")[0] > saved.summary(FOOD, "model", "mauve_other")[0]
    # the command as a library function: the same figures from Python
    sources = Sources(str(gen), references=str(refs), train=str(train), class_column="topic",
                      classifier=topic_classifier)
    res = evaluate_sources(sources, "cpu", seeds=2, mauve_features="none")
    assert isinstance(res, ClassEvaluation) and res.as_dict()["per_class"] == out["per_class"]
    with pytest.raises(InputError, match="--ppl-model does not apply to the per-class evaluation"):
        evaluate_sources(sources, "cpu", ppl_model="gpt2")


def test_cli_per_class_errors(class_files, topic_classifier, tmp_path):
    gen, refs, _ = class_files
    base = ["--references", str(refs), "--class-column", "topic", "--mauve-features", "none"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": GEN[0], "condition": "Wrld"}) + "\n")
    line = one_line_error(runner.invoke(app, ["evaluate", str(bad), *base]), 2)
    assert "asks for class 'Wrld'" in line and "food, Sci/Tech" in line
    r = runner.invoke(app, ["evaluate", str(gen), *base[:2], "--class-column", "label"])
    line = one_line_error(r, 2)
    assert "column 'label' not in DATA" in line and "--class-column" in line
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(GEN) + "\n")
    assert "no 'condition' field" in one_line_error(runner.invoke(app, ["evaluate", str(plain), *base]), 2)
    other = tmp_path / "other_clf"
    train_classifier(_store(tmp_path / "o.zarr", GEN, [FOOD] * 30 + ["Sports"] * 30), other, FAST)
    line = one_line_error(runner.invoke(app, ["evaluate", str(gen), *base, "--classifier", str(other)]), 2)
    assert "knows the classes" in line and "not Sci/Tech" in line
    r = runner.invoke(app, ["evaluate", str(gen), "--classifier", topic_classifier])
    assert "needs --class-column" in one_line_error(r, 2)
    r = runner.invoke(app, ["evaluate", str(gen), *base, "--paired"])
    assert "--paired does not apply to the per-class evaluation" in one_line_error(r, 2)
    r = runner.invoke(app, ["evaluate", str(gen), "--class-column", "topic"])
    assert "add --references" in one_line_error(r, 2)


# ----- bad conditions at sampling --------------------------------------------------------------
def _run(tmp_path, values: list[str], ctype: str):
    """A conditional run trained for one step on fake latents (the errors come before sampling)."""
    from ldlm.train import TrainArgs, train_diffusion

    spec = ConditionSpec.build(values, "topic" if ctype == "label" else "mr", ctype)
    store = LatentStore.create(str(tmp_path / f"{ctype}.zarr"), rows=len(values), latent_shape=(2, 4),
                               chunk_rows=64, attributes={"latent_space": "fake-space",
                                                          "autoencoder": "/no/ae",
                                                          "condition": spec.to_dict()})
    x = np.random.default_rng(0).normal(size=(len(values), 2, 4)).astype("f4")
    store.write_chunk(0, x, ["t"] * len(values), np.zeros(len(values)), spec.encode(values), values)
    store.finalize()
    out = tmp_path / f"{ctype}_run"
    train_diffusion(store.path, out, TrainArgs(
        arch="mlp", size="tiny", denoiser={"widths": [16, 8], "time_dim": 8}, conditional=True,
        max_steps=1, batch_size=8, lr_warmup_steps=1, eval_samples=2, eval_inference_steps=2,
        save_samples_epochs=1000, save_model_epochs=1000))
    return out


def test_sampling_with_conditions_of_the_wrong_kind(tmp_path):
    labels = ["World", "Sports", "Business", "Sci/Tech"] * 4
    label_run = _run(tmp_path, labels, "label")
    mrs = ["name[The Eagle], food[Thai]", "name[Aromi], food[French]"] * 8
    text_run = _run(tmp_path, mrs, "text")

    def fails(run, *extra) -> str:
        r = runner.invoke(app, ["sample", str(run), "--num-inference-steps", "2",
                                "--out", str(tmp_path / "x.ldlm"), *extra])
        return one_line_error(r, 2)

    line = fails(label_run, "--condition", "Wrld")
    assert "unknown condition label 'Wrld'" in line and "Business, Sci/Tech, Sports, World" in line
    assert "class labels of column 'topic'" in line
    texts = tmp_path / "texts.txt"
    texts.write_text("World\nA new space telescope sent its first pictures of a distant galaxy\n")
    line = fails(label_run, "--condition-file", str(texts))
    assert "condition 2 'A new space telescope" in line and "is a text, but" in line
    assert "class labels" in line and "--condition LABEL" in line
    line = fails(text_run, "--condition", "World")
    assert "condition 1 'World' shares no token" in line and "texts of column 'mr'" in line
    assert "food[French]" in line and "not a class label" in line
    assert not (tmp_path / "x.ldlm").exists()
    r = runner.invoke(app, ["sample", str(text_run), "--num-inference-steps", "2", "--condition",
                            "name[The Eagle], food[Greek]", "--num-samples", "1",
                            "--out", str(tmp_path / "ok.ldlm")])  # one known token is enough
    assert r.exit_code == 0, r.stderr
