"""Latent stores at fsspec URLs: memory://, file:// and an S3-compatible server (moto)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.data import load_texts
from ldlm.decode import open_latents
from ldlm.encode import encode_dataset
from ldlm.errors import InputError, RuntimeFailure
from ldlm.info import describe
from ldlm.sample import sample_latents
from ldlm.store import LatentStore, is_store, remove_store, store_location
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import one_line_error
from tests.test_encode import _Interrupting

runner = CliRunner()
TINY_TRAIN = dict(arch="mlp", denoiser={"widths": [16, 8], "time_dim": 8}, size="tiny", batch_size=8,
                  lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2, save_samples_epochs=100,
                  save_model_epochs=100, max_steps=2)
CLI_TINY = ["--size", "tiny", "--batch-size", "8", "--lr-warmup-steps", "1", "--eval-samples", "4",
            "--eval-inference-steps", "2", "--max-steps", "2"]


@pytest.fixture
def memory_url():
    """A fresh memory:// store URL, removed afterwards (memory:// lives in this process)."""
    import fsspec

    url = f"memory://ldlm-tests/{uuid.uuid4().hex[:8]}/latents.zarr"
    yield url
    fs = fsspec.filesystem("memory")
    root = url[len("memory://"):].rsplit("/", 1)[0]
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _same_latents(a: LatentStore, b: LatentStore) -> None:
    assert a.read_latents().tobytes() == b.read_latents().tobytes()  # bit for bit
    assert a.read_texts() == b.read_texts()
    np.testing.assert_array_equal(a.array("lengths")[:], b.array("lengths")[:])
    for x, y in zip(a.stats(), b.stats(), strict=True):
        assert x.tobytes() == y.tobytes()


def test_file_urls_become_local_paths(tmp_path):
    assert store_location(f"file://{tmp_path}/a.zarr") == f"{tmp_path}/a.zarr"
    assert store_location(tmp_path / "a.zarr") == f"{tmp_path}/a.zarr"
    assert store_location("memory://x/a.zarr") == "memory://x/a.zarr"


# ----- memory:// through the library ----------------------------------------------------------
def test_memory_store_encode_train_sample(memory_url, tiny_store, tiny_ae, corpus_file, tmp_path):
    rows = load_texts(str(corpus_file))
    result = encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16)
    assert result.encoded == len(rows.texts)
    assert is_store(memory_url) and not Path(memory_url).exists() and not Path("memory:").exists()
    store = LatentStore.open(memory_url)
    assert store.complete and store.path == memory_url
    _same_latents(store, LatentStore.open(tiny_store))  # same latents as the local store

    facts = describe(memory_url)
    assert facts["kind"] == "latent store" and facts["complete"] and facts["rows"] == len(rows.texts)
    source = open_latents(memory_url)  # decode's entry point reads a store at a URL
    assert source.rows == len(rows.texts)
    assert next(source.frames)[0].shape[1:] == store.latent_shape

    run = tmp_path / "run"
    trained = train_diffusion(memory_url, run, TrainArgs(**TINY_TRAIN))
    assert trained.steps == 2
    meta = json.loads((run / "ldlm_run.json").read_text())
    assert meta["store"] == memory_url and meta["latent_space"] == store.latent_space
    x, header = sample_latents(run, num_samples=3, num_inference_steps=2, scheduler="ddim")
    assert x.shape == (3, *store.latent_shape) and np.isfinite(x).all()
    assert header.latent_space == store.latent_space


def test_training_streams_from_a_memory_store(memory_url, tiny_ae, corpus_file, tmp_path):
    """A store too big for --memory-limit-mb is read chunk by chunk from its URL while training."""
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, memory_url, batch_size=8, chunk_rows=16)
    trained = train_diffusion(memory_url, tmp_path / "run", TrainArgs(**TINY_TRAIN, memory_limit_mb=0))
    assert trained.steps == 2 and np.isfinite(trained.loss)


def test_interrupted_encode_on_memory_store_resumes(memory_url, tiny_store, tiny_ae, corpus_file):
    rows = load_texts(str(corpus_file))
    model = _Interrupting(load_autoencoder(tiny_ae), 5)  # 2 batches a chunk: dies in chunk 3
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16, model=model)
    partial = LatentStore.open(memory_url, require_complete=False)
    done, total = partial.progress()
    assert 0 < done < total and not partial.complete
    with pytest.raises(InputError, match="incomplete"):
        LatentStore.open(memory_url)
    result = encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16)
    assert 0 < result.encoded < len(rows.texts)  # only the chunks not marked done
    _same_latents(LatentStore.open(memory_url), LatentStore.open(tiny_store))


def test_memory_store_refuses_to_replace_other_data(memory_url, tiny_ae, corpus_file):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = memory_url[len("memory://"):]
    fs.pipe(f"{root}/notes.txt", b"keep me")
    rows = load_texts(str(corpus_file), limit=8)
    with pytest.raises(InputError, match="not an ldlm store"):
        encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16, limit=8)
    with pytest.raises(InputError, match="not a zarr store"):
        encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16, limit=8, overwrite=True)
    assert fs.cat(f"{root}/notes.txt") == b"keep me"
    fs.rm(f"{root}/notes.txt")
    encode_dataset(rows, tiny_ae, memory_url, batch_size=8, chunk_rows=16, limit=8)
    remove_store(memory_url)
    assert not is_store(memory_url)


# ----- file:// through the CLI ----------------------------------------------------------------
def test_cli_on_file_urls(tmp_path, tiny_ae, corpus_file, tiny_store):
    local = tmp_path / "deep" / "er" / "latents.zarr"  # parent folders do not exist yet
    url = f"file://{local}"
    r = runner.invoke(app, ["encode", str(corpus_file), "--autoencoder", str(tiny_ae), "--store", url,
                            "--batch-size", "8", "--chunk-rows", "16"])
    assert r.exit_code == 0, r.stderr
    assert "60 rows" in r.stdout
    assert (local / "zarr.json").is_file() and not list(tmp_path.glob("file:*"))
    _same_latents(LatentStore.open(local), LatentStore.open(tiny_store))

    r = runner.invoke(app, ["info", url, "--json"])
    assert r.exit_code == 0, r.stderr
    facts = json.loads(r.stdout)
    assert facts["kind"] == "latent store" and facts["complete"] and facts["path"] == str(local)

    run = tmp_path / "run"
    r = runner.invoke(app, ["train", url, "--out", str(run), *CLI_TINY])
    assert r.exit_code == 0, r.stderr
    assert json.loads((run / "ldlm_run.json").read_text())["store"] == str(local)

    samples = tmp_path / "samples" / "s.zarr"
    r = runner.invoke(app, ["sample", str(run), "--num-samples", "3", "--num-inference-steps", "2",
                            "--out", f"file://{samples}"])
    assert r.exit_code == 0, r.stderr
    assert LatentStore.open(samples).read_latents().shape == (3, 4, 16)

    r = runner.invoke(app, ["decode", url, "--max-new-tokens", "3", "--format", "jsonl"])
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 60


# ----- bad URLs: one line each ----------------------------------------------------------------
@pytest.fixture
def no_s3fs(monkeypatch):
    """Make s3:// look as it does where s3fs is not installed."""
    import importlib

    registry = importlib.import_module("fsspec.registry")  # the module (fsspec.registry is a mapping)
    monkeypatch.delitem(registry._registry, "s3", raising=False)
    monkeypatch.delitem(registry._registry, "s3a", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)  # `import s3fs` raises ImportError


def test_url_without_its_package_is_one_line(no_s3fs, tmp_path, tiny_ae, corpus_file):
    url = "s3://bucket/latents.zarr"
    with pytest.raises(InputError, match=r"pip install s3fs"):
        LatentStore.open(url)
    cases = [
        ["info", url],
        ["train", url, "--out", str(tmp_path / "run")],
        ["decode", url],
        ["encode", str(corpus_file), "--autoencoder", str(tiny_ae), "--store", url],
    ]
    for argv in cases:
        line = one_line_error(runner.invoke(app, argv), 2)
        assert url in line and "s3fs" in line and "pip install s3fs" in line, (argv, line)
    assert not (tmp_path / "run").exists()


def test_gs_url_without_gcsfs(tmp_path):
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    line = one_line_error(runner.invoke(app, ["info", "gs://bucket/latents.zarr"]), 2)
    assert "gs://bucket/latents.zarr" in line and "pip install gcsfs" in line


def test_unknown_protocol_and_missing_store_at_url(memory_url, tmp_path):
    line = one_line_error(runner.invoke(app, ["info", "nosuchproto://b/x.zarr"]), 2)
    assert "knows no protocol 'nosuchproto'" in line
    for argv in (["info", memory_url], ["train", memory_url, "--out", str(tmp_path / "run")],
                 ["decode", memory_url]):
        line = one_line_error(runner.invoke(app, argv), 2)
        assert f"store {memory_url!r} does not exist; run `ldlm encode`" in line, (argv, line)
    line = one_line_error(runner.invoke(app, ["sample", str(tmp_path), "--out", "memory://x/s.ldlm"]), 2)
    assert "latent files are written to local paths" in line


# ----- an S3-compatible server (moto) ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _s3_env(endpoint: str, tmp_path: Path) -> dict:
    """The environment a user of an S3-compatible server sets (and no ~/.aws of this machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint,
               AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
               OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """A moto S3 server on a free local port with one bucket; yields the user's environment,
    which is also set in this process."""
    s3fs = pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = _s3_env(endpoint, tmp_path)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="ldlm-bucket")
    for key in [k for k in os.environ if k.startswith(("AWS_", "FSSPEC_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()  # file systems made under another environment
    yield env
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def _ldlm(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldlm", *argv], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow  # six `ldlm` processes (40-70 s on 2 shared cores)
def test_encode_train_sample_decode_on_s3_server(s3_server, tmp_path, tiny_ae, corpus_file, tiny_store):
    url = "s3://ldlm-bucket/corpora/latents.zarr"
    r = _ldlm(s3_server, "encode", str(corpus_file), "--autoencoder", str(tiny_ae), "--store", url,
              "--batch-size", "8", "--chunk-rows", "16")
    assert r.returncode == 0, r.stderr
    assert "60 rows" in r.stdout
    r = _ldlm(s3_server, "info", url, "--json")
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)
    assert facts["kind"] == "latent store" and facts["complete"] and facts["chunks_done"] == "4/4"
    run = tmp_path / "run"
    r = _ldlm(s3_server, "train", url, "--out", str(run), *CLI_TINY)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "ldlm_run.json").read_text())["store"] == url

    # the objects really are on the server, and hold the local store's latents
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing",
                           endpoint_url=s3_server["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    assert fs.exists("ldlm-bucket/corpora/latents.zarr/latents/zarr.json")
    import zarr

    remote = zarr.open_group(store=url, mode="r", storage_options={
        "key": "testing", "secret": "testing", "endpoint_url": s3_server["AWS_ENDPOINT_URL"]})
    assert remote["latents"][:].tobytes() == LatentStore.open(tiny_store).read_latents().tobytes()

    samples = "s3://ldlm-bucket/samples.zarr"
    r = _ldlm(s3_server, "sample", str(run), "--num-samples", "3", "--num-inference-steps", "2",
              "--out", samples)
    assert r.returncode == 0, r.stderr
    r = _ldlm(s3_server, "decode", samples, "--max-new-tokens", "2", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3

    line = _ldlm(s3_server, "info", "s3://ldlm-bucket/none.zarr").stderr.strip()
    assert line == ("Error: store 's3://ldlm-bucket/none.zarr' does not exist; run `ldlm encode` to "
                    "make it")


def test_missing_bucket_is_one_line(s3_server):
    with pytest.raises(InputError, match=r"cannot create store 's3://no-such-bucket/x.zarr' \(The "
                                         r"specified bucket does not exist\); check the URL, and "
                                         r"create the bucket first"):
        LatentStore.create("s3://no-such-bucket/x.zarr", rows=4, latent_shape=(2, 3), chunk_rows=2,
                           attributes={})
    with pytest.raises(InputError, match="does not exist; run `ldlm encode`"):
        LatentStore.open("s3://no-such-bucket/x.zarr")


def test_unreachable_s3_endpoint_is_one_line(tmp_path):
    pytest.importorskip("s3fs")
    env = _s3_env(f"http://127.0.0.1:{_free_port()}", tmp_path)  # nothing listens there
    env["AWS_MAX_ATTEMPTS"] = "1"
    r = _ldlm(env, "info", "s3://ldlm-bucket/latents.zarr")
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach store"), r.stderr
    assert "AWS_ENDPOINT_URL" in lines[0] and "Traceback" not in r.stderr


def test_failed_read_on_s3_names_the_store_and_what_to_check():
    """A credentials or network failure in the middle of a read is one line that says what to check."""

    class Failing:
        def __getitem__(self, key):
            raise PermissionError("Access Denied")

    class FourRows(LatentStore):
        rows = 4

    store = FourRows("s3://ldlm-bucket/x.zarr", group={"latents": Failing()})
    with pytest.raises(RuntimeFailure, match=r"cannot read 'latents' rows 0-4 of store 's3://ldlm-bucket/"
                                             r"x.zarr' \(PermissionError: Access Denied\); check the "
                                             r"credentials"):
        store.read_latents()
