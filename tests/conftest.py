"""Shared fixtures: an isolated offline environment, a tiny corpus, a tiny autoencoder,
a tiny store. Everything is built here; nothing is downloaded."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# offline before any test module imports huggingface_hub (it reads these once, at import), so a
# plain `pytest` never waits on a hub it cannot reach
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_configure(config):
    """Under pytest-xdist (`nox -s tests` runs one worker per core), each worker and the
    processes it starts compute on one thread: two workers with a pool of threads each would
    fight over the same cores, and one thread gives the same float results on any core count."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    # datasets and transformers give their loggers a stream handler on first use, bound to the
    # sys.stderr of that moment; made inside a CliRunner call, it keeps the runner's stream, which
    # is closed afterwards, and a later test's logged error became "--- Logging error ---" on
    # stderr (test_cli before test_bad_input). Made here, it binds to pytest's own stderr.
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    datasets_logging.get_logger("datasets")
    transformers_logging.get_logger("transformers")


def pytest_unconfigure(config):
    """End the zygote that forks the fault tests' `ldlm` processes (tests/zygote.py), if this
    process started one, while pytest (or its xdist worker) can still wait for it."""
    if "tests.zygote" in sys.modules:
        sys.modules["tests.zygote"].close()

CORPUS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the golden curry serves cheap indian food",
    "hello world 😀",
    "Ünïcödé text, naïve café",
    "a family friendly pub near the river",
    "the eagle is a coffee shop with low ratings",
    "fast food in the city centre",
    "mandarin text 你好世界",
    "a short one",
] * 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """No hub access and no writes to the user's caches."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("LDLM_CACHE", str(home / "ldlm"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("LDLM_DEBUG", raising=False)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_ae(tmp_path_factory) -> Path:
    """A tiny autoencoder trained for a few steps (session-wide: built once)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ldlm.autoencoder import AutoencoderConfig
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import TextRows

    out = tmp_path_factory.mktemp("ae") / "tiny"
    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    train_autoencoder(
        rows, out, AutoencoderConfig(size="tiny", max_length=24, latent_tokens=4, latent_dim=16),
        AutoencoderTrainArgs(max_steps=120, batch_size=16, learning_rate=3e-3, eval_rows=5),
    )
    return out


@pytest.fixture(scope="session")
def other_ae(tmp_path_factory) -> Path:
    """A second tiny autoencoder (another latent space, same shape)."""
    from ldlm.autoencoder import AutoencoderConfig
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import TextRows

    out = tmp_path_factory.mktemp("ae") / "other"
    rows = TextRows(texts=list(CORPUS), source="tests", split="train", column="text")
    train_autoencoder(
        rows, out, AutoencoderConfig(size="tiny", max_length=24, latent_tokens=4, latent_dim=16),
        AutoencoderTrainArgs(max_steps=2, batch_size=8, seed=7, eval_rows=0),
    )
    return out


@pytest.fixture
def tiny_store(tmp_path, tiny_ae, corpus_file) -> Path:
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    store = tmp_path / "latents.zarr"
    rows = load_texts(str(corpus_file))
    encode_dataset(rows, tiny_ae, store, batch_size=8, chunk_rows=16)
    return store


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def one_line_error(result, code: int) -> str:
    """Assert a CLI result failed with `code` and exactly one `Error:` line, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
