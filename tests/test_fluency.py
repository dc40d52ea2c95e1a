"""The word n-gram language model behind the reranker's fluency term (ldlm.fluency)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ldlm.errors import InputError, RuntimeFailure
from ldlm.fluency import BOS, EOS, NgramLM

TEXTS = ["The pub is in the city centre.", "The pub is near the river.",
         "A cheap restaurant is in the city centre.", "The restaurant is near the pub.",
         "A cheap pub in the riverside area."]


def test_a_bigram_probability_by_hand():
    lm = NgramLM.fit(["a b", "a c"], order=2, discount=0.75)
    # continuation counts: a 1 (after <s>), b 1, c 1, </s> 2 (after b and c): total 5, 4 types,
    # and 4 words plus one unknown share the discounted mass
    p_b = (1 - 0.75) / 5 + 0.75 * 4 / 5 * (1 / 5)
    assert lm.prob(("a",), "b") == pytest.approx((1 - 0.75) / 2 + 0.75 * 2 / 2 * p_b)
    assert lm.prob(("zzz",), "b") == pytest.approx(p_b)  # an unseen context keeps the unigrams
    assert lm.prob(("a",), "zzz") == pytest.approx(0.75 * 2 / 2 * 0.75 * 4 / 5 / 5)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("context", [("the", "pub", "is"), ("in", "the", "city"), ("no", "such", "words")])
def test_probabilities_sum_to_one_over_the_vocabulary_and_an_unknown_word(order, context):
    lm = NgramLM.fit(TEXTS, order=order)
    vocab = {w for t in TEXTS for w in t.lower().replace(".", " .").split()} | {EOS}
    ctx = context[len(context) - (order - 1):] if order > 1 else ()
    total = sum(lm.prob(ctx, w) for w in vocab) + lm.prob(ctx, "unknownword")
    assert total == pytest.approx(1.0, abs=1e-9)
    assert lm.prob(ctx, BOS) == lm.prob(ctx, "unknownword")  # the start is never predicted


def test_fluent_text_scores_above_the_same_words_shuffled():
    lm = NgramLM.fit(TEXTS, order=3)
    fluent = "The pub is in the city centre."
    shuffled = "centre the pub city in The is."
    assert lm.log_prob(fluent) > lm.log_prob(shuffled) + 5
    a, b = lm.mean_log_prob([fluent, shuffled])
    assert a == pytest.approx(lm.log_prob(fluent) / 9) and a > b  # 8 words and </s>
    assert lm.log_prob("a pub") < 0


def test_perplexity_is_the_exponent_of_the_mean_loss_per_token():
    lm = NgramLM.fit(TEXTS[:3], order=2)
    held = TEXTS[3:]
    tokens = sum(len(t.split()) + 2 for t in held)  # words, the full stop, </s>
    expected = math.exp(-sum(lm.log_prob(t) for t in held) / tokens)
    assert lm.perplexity(held) == pytest.approx(expected)
    assert 1 < lm.perplexity(TEXTS[:3]) < lm.perplexity(held)  # the training texts are likelier


def test_round_trip_through_a_dict():
    lm = NgramLM.fit(TEXTS, order=3)
    back = NgramLM.from_dict(lm.to_dict())
    probe = ["The pub is near the city centre.", "a b c"]
    np.testing.assert_array_equal(back.mean_log_prob(probe), lm.mean_log_prob(probe))
    assert back.order == 3 and back.counts == lm.counts


@pytest.mark.parametrize("data", [{"order": 2}, {"order": 2, "discount": 0.75, "counts": [["a", 1]]},
                                  {"order": 2, "discount": 0.75, "counts": [["a", "b", "x"]]}])
def test_damaged_counts(data):
    with pytest.raises(RuntimeFailure, match="n-gram counts are damaged"):
        NgramLM.from_dict(data)


def test_bad_arguments():
    with pytest.raises(InputError, match="order 0 must be at least 1"):
        NgramLM.fit(TEXTS, order=0)
    with pytest.raises(InputError, match="discount 1.0 must be in"):
        NgramLM.fit(TEXTS, discount=1.0)
    with pytest.raises(InputError, match="at least one text"):
        NgramLM.fit([], order=2)
