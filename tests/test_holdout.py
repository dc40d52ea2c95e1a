"""Every hold-out goes through ldlm.holdout: the named policies pick the rows they always picked."""

import pytest

from ldlm.holdout import POLICIES, holdout, holdout_rows, spaced_holdout


def test_the_last_policy_holds_out_the_last_rows_as_two_ranges():
    train, held = holdout(100, holdout_rows(100, 1000), "last")
    assert (train, held) == (range(95), range(95, 100))  # 5% of 100
    assert holdout(30, holdout_rows(30, 1000), "last") == (range(30), range(30, 30))  # a tiny store: none
    assert holdout(10, 20, "last") == (range(0), range(10))  # never more rows than there are


def test_the_spaced_policy_is_spaced_holdout():
    labels = [i % 3 for i in range(90)]
    assert holdout(100, 10, "spaced") == spaced_holdout(100, 10)
    assert holdout(90, 9, "spaced", labels) == spaced_holdout(90, 9, labels)


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="Unknown hold-out policy 'first'; use one of spaced, last"):
        holdout(10, 2, "first")
    assert POLICIES == ("spaced", "last")
