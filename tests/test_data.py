import json

import pytest

from ldlm.data import load_texts
from ldlm.errors import InputError


def test_txt_skips_blank_lines_and_keeps_order(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first\n\n   \nsecond 😀\nthird\n", encoding="utf-8")
    rows = load_texts(str(f))
    assert rows.texts == ["first", "second 😀", "third"]
    assert rows.skipped == 2
    assert rows.source_index == [0, 3, 4]


def test_csv_column_and_limit(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("mr,ref\nx,hello there\ny,general kenobi\nz,third\n", encoding="utf-8")
    rows = load_texts(str(f), text_column="ref", limit=2, condition_column="mr")
    assert rows.texts == ["hello there", "general kenobi"]
    assert rows.conditions == ["x", "y"]


def test_jsonl_rows_that_are_not_strings_are_skipped(tmp_path):
    f = tmp_path / "a.jsonl"
    lines = [{"text": "ok"}, {"text": None}, {"text": ""}, {"text": "fine"}]
    f.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    rows = load_texts(str(f))
    assert rows.texts == ["ok", "fine"] and rows.skipped == 2


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a b", "c d"]}), f)
    assert load_texts(str(f)).texts == ["a b", "c d"]


def test_missing_column_lists_the_columns(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("mr,ref\nx,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"column 'text' not in .*columns: mr, ref.*--text-column"):
        load_texts(str(f))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_texts(str(tmp_path / "nope.csv"))


def test_empty_dataset_is_refused(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no usable text"):
        load_texts(str(f))


def test_unknown_split(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x\n", encoding="utf-8")
    with pytest.raises(InputError, match="split 'test' not in .*available: train"):
        load_texts(str(f), split="test")


def test_unknown_hub_id_offline_is_an_input_error():
    with pytest.raises(InputError, match="could not load DATA 'nobody-has/this-dataset-xyz'"):
        load_texts("nobody-has/this-dataset-xyz")


def test_bad_limit(tmp_path):
    with pytest.raises(InputError, match="--limit 0"):
        load_texts("whatever", limit=0)
