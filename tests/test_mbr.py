"""ldlm.mbr: cached-n-gram sentence BLEU and MBR pick equal sacrebleu's, pair by pair."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from ldlm.mbr import mbr_pick, mbr_scores, pairwise_bleu

_VOCAB = ["the", "The", "cat", "sat", "on", "mat", "a", ".", ",", "£20-25.", "family-friendly", "near",
          "Burger", "King", "3.5", "it's", "(", ")", "&amp;", "-", "x", "x", "x", "the"]


def _sacrebleu_scores(candidates: list[str]) -> list[float]:
    """The reference: the O(N^2) sacrebleu loop mbr_pick replaced."""
    bleu = BLEU(effective_order=True)
    return [np.mean([bleu.sentence_score(h, [o]).score for j, o in enumerate(candidates) if j != i])
            for i, h in enumerate(candidates)]


def _random_sets(seed: int, count: int) -> list[list[str]]:
    rng = random.Random(seed)
    sets = []
    for _ in range(count):
        size = rng.randint(2, 9)
        base = " ".join(rng.choices(_VOCAB, k=rng.randint(0, 12)))
        cands = []
        for _ in range(size):
            kind = rng.random()
            if kind < 0.1:
                cands.append(rng.choice(["", " ", "x", "x x x x", ".", "£20-25."]))
            elif kind < 0.25 and cands:
                cands.append(rng.choice(cands))  # an identical candidate
            elif kind < 0.6:  # a perturbed copy of the shared base, so pairs overlap
                words = base.split()
                for _ in range(rng.randint(0, 3)):
                    if words and rng.random() < 0.5:
                        words.pop(rng.randrange(len(words)))
                    else:
                        words.insert(rng.randint(0, len(words)), rng.choice(_VOCAB))
                cands.append(" ".join(words) + rng.choice(["", " ", "\n"]))
            else:  # anything from 0 to 30 words
                cands.append(" ".join(rng.choices(_VOCAB, k=rng.randint(0, 30))))
        sets.append(cands)
    return sets


SETS = _random_sets(0, 150) + [
    ["", ""], ["", "a"], ["a", ""], ["a", "a"], ["a b c d", "a b c d e f g h"],
    ["The £20-25. family-friendly pub.", "The pub is family-friendly, £20-25.", ""],
    ["the the the the", "the", "the the"], ["same text .", "same text .", "same text ."],
]


@pytest.mark.parametrize("cands", SETS)
def test_pairwise_bleu_equals_sacrebleu_sentence_score(cands):
    bleu = BLEU(effective_order=True)
    ours = pairwise_bleu(cands)
    for i, h in enumerate(cands):
        for j, r in enumerate(cands):
            assert ours[i][j] == pytest.approx(bleu.sentence_score(h, [r]).score, abs=1e-9, rel=0)


def test_scores_and_pick_equal_the_sacrebleu_loop():
    for cands in SETS:
        reference = _sacrebleu_scores(cands)
        assert mbr_scores(cands).tolist() == reference  # bit for bit, so ties break alike
        assert mbr_pick(cands) == int(np.argmax(reference))


def test_bleu_is_not_symmetric():
    short, long = "the cat sat", "the cat sat on the mat today"
    scores = pairwise_bleu([short, long])
    # the short hypothesis matches all its n-grams and pays only the brevity penalty
    assert scores[0][1] == pytest.approx(100 * math.exp(1 - 7 / 3))
    assert scores[1][0] != pytest.approx(scores[0][1])


def test_mbr_pick_takes_the_consensus_and_the_first_on_ties():
    cands = ["a dog barked loudly", "the cat sat on the mat", "green ideas sleep furiously",
             "the cat sat on a mat", "the cat sat on the mat today"]
    assert mbr_pick(cands) == 1
    assert mbr_pick(["same words", "same words", "other"]) == 0  # tie between 0 and 1
    assert mbr_pick(["only"]) == 0 and mbr_pick([]) == 0
    assert mbr_scores(["only"]).tolist() == [0.0]
