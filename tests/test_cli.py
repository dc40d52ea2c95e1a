"""The command line through Typer's runner: exit codes, stdout and stderr apart."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.latent_file import LatentHeader, write_latent_file
from tests.conftest import one_line_error, read_jsonl

runner = CliRunner()
COMMANDS = [c.name for c in app.registered_commands]  # every command, new ones included


@pytest.mark.parametrize("name", COMMANDS)
def test_help(name):
    r = runner.invoke(app, [name, "--help"])
    assert r.exit_code == 0 and "Usage" in r.stdout


def test_every_command_is_listed():
    assert {"train-autoencoder", "encode", "train", "sample", "decode", "adapt-decoder"} <= set(COMMANDS)


def test_train_autoencoder_cli(tmp_path, corpus_file):
    out = tmp_path / "ae"
    r = runner.invoke(app, ["train-autoencoder", str(corpus_file), "--out", str(out),
                            "--size", "tiny", "--max-steps", "3", "--batch-size", "8",
                            "--eval-rows", "4", "--max-length", "24"])
    assert r.exit_code == 0, r.stderr
    assert "reconstruction on 4 held-out texts: exact match" in r.stdout
    assert load_autoencoder(out).latent_shape == (8, 64)
    again = runner.invoke(app, ["train-autoencoder", str(corpus_file), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_encode_decode_info_cli(tmp_path, tiny_ae, corpus_file):
    store = tmp_path / "s.zarr"
    r = runner.invoke(app, ["encode", str(corpus_file), "--autoencoder", str(tiny_ae),
                            "--store", str(store), "--batch-size", "8", "--chunk-rows", "16"])
    assert r.exit_code == 0, r.stderr
    assert "60 rows" in r.stdout
    r = runner.invoke(app, ["decode", str(store), "--temperature", "0", "--format", "jsonl"])
    assert r.exit_code == 0, r.stderr
    records = read_jsonl(r.stdout)
    assert len(records) == 60 and {"index", "text", "reference"} <= set(records[0])
    r = runner.invoke(app, ["decode", str(store), "--temperature", "0"])
    assert r.stdout.count("\n") == 60
    info = runner.invoke(app, ["info", str(store), "--json"])
    facts = json.loads(info.stdout)
    assert facts["kind"] == "latent store" and facts["complete"] and facts["rows"] == 60
    info = json.loads(runner.invoke(app, ["info", str(tiny_ae), "--json"]).stdout)
    assert info["kind"] == "autoencoder" and info["latent_space"] == facts["latent_space"]
    assert info["latent_injection"] == "cross-attention"  # the default


def test_decode_reads_stdin(tmp_path, tiny_ae):
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(["the cat sat on the mat"]).numpy()
    path = tmp_path / "z.ldlm"
    write_latent_file(path, LatentHeader(model.fingerprint, model.latent_shape, str(tiny_ae)), z)
    r = runner.invoke(app, ["decode", "--temperature", "0"], input=path.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "the cat sat on the mat\n"
    info = json.loads(runner.invoke(app, ["info", str(path), "--json"]).stdout)
    assert info["kind"] == "latent file" and info["rows"] == 1


def test_bad_inputs(tmp_path, tiny_ae, other_ae, tiny_store, corpus_file):
    csv = tmp_path / "a.csv"
    csv.write_text("mr,ref\nx,hello\n")
    notae = tmp_path / "notae"
    notae.mkdir()
    model = load_autoencoder(tiny_ae)
    k, d = model.latent_shape
    wrong = tmp_path / "wrong.ldlm"
    write_latent_file(wrong, LatentHeader(model.fingerprint, (k, d + 2)), np.zeros((1, k, d + 2), "f4"))
    cases = [
        (["encode", str(tmp_path / "missing.txt"), "--autoencoder", str(tiny_ae), "--store",
          str(tmp_path / "x.zarr")], "does not exist"),
        (["encode", str(csv), "--autoencoder", str(tiny_ae), "--store", str(tmp_path / "x.zarr")],
         "columns: mr, ref"),
        (["encode", str(corpus_file), "--autoencoder", str(notae), "--store",
          str(tmp_path / "x.zarr")], "not an ldlm autoencoder folder"),
        (["encode", str(corpus_file), "--autoencoder", str(other_ae), "--store", str(tiny_store),
          "--batch-size", "8", "--chunk-rows", "16"], "holds latents of autoencoder"),
        (["train-autoencoder", "nobody/nothing-here-xyz", "--out", str(tmp_path / "a")],
         "could not load DATA"),
        (["decode", str(tiny_store), "--autoencoder", str(other_ae)], "live in latent space"),
        (["decode", str(wrong), "--autoencoder", str(tiny_ae)], "have shape"),
        (["decode", str(tmp_path / "none.ldlm")], "does not exist"),
        (["decode", str(tiny_store), "--max-new-tokens", "0"], "--max-new-tokens 0"),
        (["info", str(tmp_path / "none")], "does not exist"),
        (["train-autoencoder", str(corpus_file), "--out", str(tmp_path / "a"), "--size", "tiny",
          "--max-steps", "0"], "--max-steps 0"),
        (["train-autoencoder", str(corpus_file), "--out", str(tmp_path / "a"), "--size", "tiny",
          "--pooling", "mean", "--latent-tokens", "4"], "needs --pooling queries"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((["train-autoencoder", str(corpus_file), "--out", str(tmp_path / "a"),
                       "--mixed-precision", "fp16"], "needs a CUDA GPU"))
    for args, message in cases:
        line = one_line_error(runner.invoke(app, args), 2)
        assert message in line, (args, line)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "a").exists()


def test_stdin_garbage_and_empty(tiny_ae):
    line = one_line_error(runner.invoke(app, ["decode"], input=b""), 2)
    assert "empty" in line
    line = one_line_error(runner.invoke(app, ["decode"], input=b"not latents at all"), 2)
    assert "not an ldlm latent stream" in line


def test_debug_variable_shows_traceback(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "none")], env={"LDLM_DEBUG": "1"})
    assert r.exit_code == 2 and "Traceback" in r.stderr
