"""The standing comparison (benchmarks/ar_comparison.py): how AG News text is cleaned, and that
the corpus splits keep the scored rows out of training (test and dev alike)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "ar_comparison.py"
_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("ar_comparison", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("raw,clean", [
    ("America #39;s top diplomat", "America's top diplomat"),
    ("support for a  #39;fully functioning #39; democracy", "support for a 'fully functioning' democracy"),
    ("Barack Obama Gets  #36;1.9 Million", "Barack Obama Gets $1.9 Million"),
    ("Darfur issue &lt;b&gt;...&lt;/b&gt;. Sudanese", "Darfur issue ... . Sudanese"),
    ("obstacle to\\U.N. approval", "obstacle to U.N. approval"),
    ("AT&amp;T said", "AT&T said"),
])
def test_ag_news_cleaning(compare, raw, clean):
    assert compare.clean_ag_news(raw) == clean


def _csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def test_scored_rows_never_train(compare, tmp_path):
    _csv(tmp_path / "e2e" / "trainset.csv", "mr,ref", [f"mr,ref {i}" for i in range(100)])
    _csv(tmp_path / "ag_news" / "train.csv", "class_index,title,description",
         [f"1,Title {i},Text #39;s {i}" for i in range(100)])
    _csv(tmp_path / "ag_news" / "test.csv", "class_index,title,description",
         [f"2,Test {i},Body {i}" for i in range(7)])
    e2e_test, e2e_dev = (compare.corpus_texts("e2e", s, tmp_path) for s in ("test", "dev"))
    assert e2e_test["refs"] == [f"ref {i}" for i in range(0, 100, 20)]  # SOURCE.md: i % 20 == 0
    assert e2e_dev["refs"] == [f"ref {i}" for i in range(10, 100, 20)]
    assert len(e2e_test["train"]) == 95 and len(e2e_dev["train"]) == 90  # dev holds out its rows too
    for texts in (e2e_test, e2e_dev):
        assert set(texts["refs"]).isdisjoint(texts["train"])
    ag_test, ag_dev = (compare.corpus_texts("ag_news", s, tmp_path) for s in ("test", "dev"))
    assert ag_test["refs"] == [f"Test {i}. Body {i}" for i in range(7)]  # test.csv, title. description
    assert ag_test["human"] == [f"Title {i}. Text's {i}" for i in range(0, 100, 20)]
    assert len(ag_test["train"]) == 95 and set(ag_test["human"]).isdisjoint(ag_test["train"])
    assert ag_dev["refs"] == [f"Title {i}. Text's {i}" for i in range(10, 100, 20)]
    assert set(ag_dev["refs"]).isdisjoint(ag_dev["train"]) and len(ag_dev["train"]) == 90


def test_ar_sequences_fit_the_positions_with_a_topic_token(compare):
    from ldlm.autoencoder.tokenizer import train_tokenizer

    texts = ["word " * 400, "short text"]  # the first is longer than any position table
    tok = train_tokenizer(texts, 300)
    topic = tok.convert_tokens_to_ids(tok.eos_token)  # any id stands for a topic token here
    for prefix in ([[]] * 2, [[topic]] * 2):
        ids = compare.ar_sequences(tok, texts, prefix, 32)
        assert max(len(x) for x in ids) == 32  # the long text cut to fit, topic token or not
        assert all(x[0] == tok.bos_token_id and x[-1] == tok.eos_token_id for x in ids)
        assert all(x[1:1 + len(p)] == p for x, p in zip(ids, prefix, strict=True))
        assert len(ids[1]) < 32  # a short text is not padded or cut
