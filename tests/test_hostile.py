"""The cases a hostile review found that the fault and bad-input suites missed (issue 21):
nothing lost, nothing silently wrong, nobody else's code run. One test (or a few) per case,
numbered as in the review; then fuzz tests of the latent-stream reader and the slot parser.

Where the behaviour depends on a real process (SIGTERM, library logs on the real stderr) the
test runs `python -m ldlm`; a full disk is a real small tmpfs where this machine can mount one
(as root), else a write that fails with ENOSPC as the kernel's would.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.conditions import tokenize_condition
from ldlm.errors import InputError, RuntimeFailure
from ldlm.info import describe
from ldlm.latent_file import MAGIC, LatentHeader, LatentWriter, open_latents, write_latent_file
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import CORPUS, one_line_error, read_jsonl
from tests.test_bad_input import snapshot
from tests.test_faults import TRAIN_ARGS, Proc, error_line, kill_when
from tests.test_train_sample import FAST, TINY, make_store

runner = CliRunner()
SAMPLE = ["--num-inference-steps", "2", "--scheduler", "ddim", "--device", "cpu"]
DECODE = ["--temperature", "0", "--max-new-tokens", "8", "--device", "cpu"]


def _stream(header: LatentHeader, *frames) -> bytes:
    """The bytes of a latent stream: `frames` are (latents, meta or None)."""
    buf = io.BytesIO()
    writer = LatentWriter(buf, header)
    for x, meta in frames:
        writer.write(x, meta)
    writer.close()
    return buf.getvalue()


def _tiny_run(store: Path, out: Path, steps: int, resume: str | None = None):
    return train_diffusion(store, out, TrainArgs(
        arch="mlp", denoiser=dict(TINY["mlp"]), **{**FAST, "max_steps": steps, "checkpointing_steps": 2},
        resume=resume))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_ae, corpus_file):
    """A finished run of a fake latent space, a complete store and latents of tiny_ae's space."""
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    root = tmp_path_factory.mktemp("hostile")
    fake = make_store(root / "fake.zarr")
    run = root / "run"
    _tiny_run(fake, run, 2)
    store = root / "a.zarr"
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, store, batch_size=8, chunk_rows=16)
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:4]).numpy()
    header = LatentHeader(model.fingerprint, model.latent_shape, str(tiny_ae))
    latents = root / "a.ldlm"
    write_latent_file(latents, header, z)
    return {"root": root, "fake": fake, "run": run, "store": store, "ae": Path(tiny_ae), "z": z,
            "header": header, "latents": latents, "model": model, "corpus": Path(corpus_file)}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----- 1: sample --out never replaces a store without --overwrite, and then only atomically ------
def test_sample_out_keeps_an_existing_store_without_overwrite(tmp_path, world):
    old = _copy(world["store"], tmp_path / "old.zarr")
    before = snapshot(old)
    args = ["sample", str(world["run"]), "--num-samples", "3", *SAMPLE, "--out", str(old)]
    line = one_line_error(runner.invoke(app, args), 2)
    assert "--overwrite" in line and "old.zarr" in line
    assert snapshot(old) == before and LatentStore.open(old).rows == 60
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.stderr
    assert LatentStore.open(old).rows == 3
    assert [p.name for p in tmp_path.iterdir()] == ["old.zarr"]


def test_sample_overwrite_keeps_the_old_store_until_the_new_one_is_whole(tmp_path, world, monkeypatch):
    old = _copy(world["store"], tmp_path / "old.zarr")
    before = LatentStore.open(old).read_latents()
    real = LatentStore.write_chunk

    def full_disk_at_the_second_chunk(self, chunk, *args, **kwargs):
        if chunk == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, chunk, *args, **kwargs)

    monkeypatch.setattr(LatentStore, "write_chunk", full_disk_at_the_second_chunk)
    r = runner.invoke(app, ["sample", str(world["run"]), "--num-samples", "6", "--batch-size", "2",
                            *SAMPLE, "--out", str(old), "--overwrite"])
    line = one_line_error(r, 1)
    assert "No space left on device" in line and "old.zarr" in line and "no file" not in line
    np.testing.assert_array_equal(LatentStore.open(old).read_latents(), before)
    assert [p.name for p in tmp_path.iterdir()] == ["old.zarr"]  # no temporary store left


def test_encode_overwrite_keeps_the_old_store_until_the_new_one_is_whole(tmp_path, world, other_ae,
                                                                         monkeypatch):
    store = _copy(world["store"], tmp_path / "s.zarr")
    before = snapshot(store)
    real = LatentStore.write_chunk

    def full_disk_at_the_third_chunk(self, chunk, *args, **kwargs):
        if chunk == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, chunk, *args, **kwargs)

    args = ["encode", str(world["corpus"]), "--autoencoder", str(other_ae), "--store", str(store),
            "--batch-size", "8", "--chunk-rows", "16", "--device", "cpu", "--overwrite"]
    with monkeypatch.context() as m:
        m.setattr(LatentStore, "write_chunk", full_disk_at_the_third_chunk)
        one_line_error(runner.invoke(app, args), 1)
    assert snapshot(store) == before  # the old store, whole and untouched
    r = runner.invoke(app, args)  # the same command resumes the new store, then swaps it in
    assert r.exit_code == 0 and "encoded 28 rows" in r.stdout, r.stdout + r.stderr
    assert LatentStore.open(store).latent_space == load_autoencoder(other_ae).fingerprint
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


# ----- 2: --out is never an input, nor inside a run or store ------------------------------------
def test_out_is_never_an_input(tmp_path, world):
    latents = tmp_path / "x.ldlm"
    shutil.copy(world["latents"], latents)
    raw = latents.read_bytes()
    line = one_line_error(runner.invoke(app, ["decode", str(latents), "--out", str(latents), *DECODE]), 2)
    assert "x.ldlm" in line and "LATENTS" in line
    assert latents.read_bytes() == raw
    line = one_line_error(runner.invoke(app, ["evaluate", str(latents), "--json", str(latents)]), 2)
    assert "GENERATED" in line and latents.read_bytes() == raw


def test_out_is_never_inside_a_run_or_a_store(tmp_path, world):
    run = _copy(world["run"], tmp_path / "run")
    store = _copy(world["store"], tmp_path / "a.zarr")
    before = snapshot(run, store)
    cases = [
        (["sample", str(run), "--num-samples", "2", *SAMPLE, "--out", str(run / "ldlm_run.json")], "RUN_DIR"),
        (["sample", str(world["run"]), "--num-samples", "2", *SAMPLE, "--out", str(run / "s.ldlm")],
         "a diffusion run"),
        (["decode", str(store), "--out", str(store / "texts.txt"), *DECODE], "LATENTS"),
        (["decode", str(world["latents"]), "--out", str(store / "latents" / "c" / "0" / "0" / "0"), *DECODE],
         "a latent store"),
        (["adapt-decoder", str(run), "--out", str(run), "--overwrite"], "RUN_DIR"),
        (["train-classifier", str(store), "--out", str(store), "--overwrite"], "STORE"),
        (["train-autoencoder", str(world["corpus"]), "--out", str(store), "--overwrite"], "a latent store"),
        (["encode", str(world["corpus"]), "--autoencoder", str(world["ae"]), "--store", str(run)],
         "a diffusion run"),
    ]
    for argv, words in cases:
        line = one_line_error(runner.invoke(app, argv), 2)
        assert words in line, (argv, line)
    assert snapshot(run, store) == before


def test_the_guard_knows_every_artefact_marker():
    """ldlm.outputs names the marker files itself (so that any module may import it); they must
    be the ones their owners write."""
    from ldlm import outputs
    from ldlm.autoencoder.train import CHECKPOINT_FILE as AE_CHECKPOINT
    from ldlm.classifier import CLASSIFIER_FILE
    from ldlm.run import RUN_FILE
    from ldlm.train import CHECKPOINT_FILE as RUN_CHECKPOINT

    assert outputs.MARKERS == {"run": RUN_FILE, "classifier": CLASSIFIER_FILE}
    assert outputs.CHECKPOINT_MARKERS == {RUN_CHECKPOINT: "run", AE_CHECKPOINT: "autoencoder"}


# ----- 3: the slot parser is linear on any input --------------------------------------------------
def test_malformed_mrs_parse_in_linear_time():
    for n in (24, 500, 50_000):  # the regular expression took 6 s at 24 and never ended at 500
        started = time.perf_counter()
        tokens = tokenize_condition("name[x], " * n)
        assert time.perf_counter() - started < 1.0, n
        assert tokens[:4] == ["name", "[", "x", "]"] and len(tokens) == 5 * n
    assert tokenize_condition("name[The Eagle], eatType[coffee shop]") == [
        "name[The Eagle]", "eatType[coffee shop]"]


def test_encode_with_a_malformed_mr_row_does_not_stall(tmp_path, world):
    data = tmp_path / "mr.csv"
    rows = [("a text", "name[x], " * 500)] + [(t, "name[Alimentum], food[Thai]") for t in CORPUS[:9]]
    data.write_text("text,mr\n" + "".join(f'"{t}","{m}"\n' for t, m in rows), encoding="utf-8")
    started = time.perf_counter()
    r = runner.invoke(app, ["encode", str(data), "--autoencoder", str(world["ae"]), "--store",
                            str(tmp_path / "s.zarr"), "--condition-column", "mr", "--condition-type",
                            "text", "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    assert time.perf_counter() - started < 60


# ----- 4: a lost or damaged chunk is found, not read as zeros or NaN ------------------------------
def test_a_deleted_chunk_is_reported_refused_and_re_encoded(tmp_path, world):
    store = _copy(world["store"], tmp_path / "s.zarr")
    (store / "latents" / "c" / "1" / "0" / "0").unlink()
    facts = describe(str(store))
    assert facts["complete"] is False and facts["chunks_done"] == "3/4" and facts["lost_chunks"] == 1
    r = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), *TRAIN_ARGS,
                            "--max-steps", "2"])
    line = one_line_error(r, 1)
    assert "rows 16-32" in line and "ldlm encode" in line
    assert not (tmp_path / "run").exists()
    line = one_line_error(runner.invoke(app, ["decode", str(store), *DECODE]), 1)
    assert "rows 16-32" in line
    r = runner.invoke(app, ["encode", str(world["corpus"]), "--autoencoder", str(world["ae"]), "--store",
                            str(store), "--batch-size", "8", "--chunk-rows", "16", "--device", "cpu"])
    assert r.exit_code == 0 and "encoded 16 rows" in r.stdout, r.stderr
    repaired, clean = LatentStore.open(store), LatentStore.open(world["store"])
    np.testing.assert_array_equal(repaired.read_latents(), clean.read_latents())
    assert repaired.attrs == clean.attrs and describe(str(store))["complete"] is True


def test_nan_latents_in_a_store_are_refused_not_decoded_or_trained_on(tmp_path, world):
    store = _copy(world["store"], tmp_path / "s.zarr")
    zarr.open_group(str(store), mode="r+")["latents"][20:24] = np.nan
    line = one_line_error(runner.invoke(app, ["decode", str(store), *DECODE]), 1)
    assert "NaN" in line and "row 20" in line
    r = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), *TRAIN_ARGS,
                            "--max-steps", "2"])
    line = one_line_error(r, 1)
    assert "NaN" in line and "--learning-rate" not in line
    assert not (tmp_path / "run").exists()


# ----- 5: the latent-space id is recomputed from the weights -----------------------------------------
def test_an_autoencoder_with_another_runs_weights_is_refused(tmp_path, world, other_ae):
    swapped = _copy(world["ae"], tmp_path / "ae")
    shutil.copy(Path(other_ae) / "model.safetensors", swapped / "model.safetensors")
    with pytest.raises(InputError, match="model.safetensors defines latent space"):
        load_autoencoder(swapped)
    line = one_line_error(runner.invoke(app, ["decode", str(world["latents"]), "--autoencoder",
                                              str(swapped), *DECODE]), 2)
    assert "config.json records" in line
    store = _copy(world["store"], tmp_path / "s.zarr")
    before = snapshot(store)
    r = runner.invoke(app, ["encode", str(world["corpus"]), "--autoencoder", str(swapped), "--store",
                            str(store), "--batch-size", "8", "--chunk-rows", "16", "--device", "cpu"])
    one_line_error(r, 2)
    assert snapshot(store) == before
    assert load_autoencoder(world["ae"]).fingerprint == world["header"].latent_space  # the real one loads


# ----- 6: row metadata cannot replace the decoded text --------------------------------------------
def test_row_metadata_cannot_replace_the_decoded_text(world):
    import torch

    z = world["z"][:2]
    meta = [{"text": "INJECTED", "index": 99, "source": "kept"}] * 2
    r = runner.invoke(app, ["decode", "-", "--format", "jsonl", *DECODE],
                      input=_stream(world["header"], (z, meta)))
    assert r.exit_code == 0, r.stderr
    records = read_jsonl(r.stdout)
    want = world["model"].generate(torch.from_numpy(z), max_new_tokens=8, temperature=0.0)
    assert [x["text"] for x in records] == want and "INJECTED" not in r.stdout
    assert [x["index"] for x in records] == [0, 1] and records[0]["source"] == "kept"


# ----- 7: concatenated streams decode whole ---------------------------------------------------------
def test_concatenated_streams_decode_every_row(world):
    z, header = world["z"], world["header"]
    a, b = _stream(header, (z[:2], None)), _stream(header, (z[2:], None))
    r = runner.invoke(app, ["decode", "-", "--format", "jsonl", *DECODE], input=a + b)
    assert r.exit_code == 0, r.stderr
    assert [x["index"] for x in read_jsonl(r.stdout)] == [0, 1, 2, 3]
    other = _stream(LatentHeader("another-space", header.latent_shape, None), (z[:1], None))
    line = one_line_error(runner.invoke(app, ["decode", "-", *DECODE], input=a + other), 2)
    assert "another latent space" in line
    line = one_line_error(runner.invoke(app, ["decode", "-", *DECODE], input=a + b"junk"), 2)
    assert "trailing bytes" in line


# ----- 8: a store's attributes are checked against its arrays ---------------------------------------
@pytest.mark.parametrize("attrs,code,words", [
    ({"rows": 40}, 1, "rows 40"),
    ({"rows": 80}, 1, "rows 80"),
    ({"ldlm_version": 2}, 2, "upgrade ldlm"),
    ({"ldlm_version": "1"}, 2, "ldlm_version '1'"),
])
def test_store_attributes_must_agree_with_the_arrays(tmp_path, world, attrs, code, words):
    store = _copy(world["fake"], tmp_path / "s.zarr")
    zarr.open_group(str(store), mode="r+").attrs.update(attrs)
    for argv in (["decode", str(store)], ["train", str(store), "--out", str(tmp_path / "run")],
                 ["info", str(store)]):
        line = one_line_error(runner.invoke(app, argv), code)
        assert words in line and "Traceback" not in line, (argv, line)
    assert not (tmp_path / "run").exists()


def test_stream_format_and_version_are_read(world):
    body = json.loads(world["header"].to_json())
    for key, value, words in (("version", 2, "version 2"), ("format", "other", "format 'other'")):
        raw = json.dumps({**body, key: value}).encode()
        data = MAGIC + struct.pack("<I", len(raw)) + raw + struct.pack("<II", 0, 0)
        line = one_line_error(runner.invoke(app, ["decode", "-"], input=data), 2)
        assert words in line


# ----- 9: values that would change behaviour unseen are refused -------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["decode", "{latents}", "--temperature", "nan"], "--temperature nan"),
    (["decode", "{latents}", "--top-p", "nan"], "--top-p nan"),
    (["train-autoencoder", "{corpus}", "--out", "{out}", "--latent-noise", "nan"], "--latent-noise nan"),
    (["train-autoencoder", "{corpus}", "--out", "{out}", "--eval-rows", "-1"], "--eval-rows -1"),
    (["train-autoencoder", "{corpus}", "--out", "{out}", "--learning-rate", "inf"], "--learning-rate inf"),
    (["train", "{fake}", "--out", "{out}", "--learning-rate", "inf"], "--learning-rate inf"),
    (["train", "{fake}", "--out", "{out}", "--condition-dropout", "nan"], "--condition-dropout nan"),
    (["sample", "{run}", "--out", "{out}.ldlm", "--noise-scale", "nan"], "--noise-scale nan"),
    (["sample", "{run}", "--out", "{out}.ldlm", "--eta", "nan", "--scheduler", "ddim"], "--eta nan"),
    (["sample", "{run}", "--out", "{out}.ldlm", "--init-text", "a", "--strength", "nan"], "--strength nan"),
    (["adapt-decoder", "{run}", "--out", "{out}", "--estimate-share", "nan"], "--estimate-share nan"),
    (["train-classifier", "{fake}", "--out", "{out}", "--weight-decay", "inf"], "--weight-decay inf"),
    (["interpolate", "a", "b", "--autoencoder", "{ae}", "--temperature", "-inf"], "--temperature -inf"),
])
def test_nan_and_infinity_are_refused_everywhere(tmp_path, world, argv, words):
    argv = [a.format(out=tmp_path / "out", **{k: v for k, v in world.items() if isinstance(v, Path)})
            for a in argv]
    line = one_line_error(runner.invoke(app, argv), 2)
    assert words in line and ("finite" in line or "-1" in words), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.ldlm").exists()


def test_the_library_checks_refuse_nan_and_infinity_too():
    from ldlm.autoencoder import AutoencoderConfig
    from ldlm.decode import DecodeArgs
    from ldlm.sample import SamplingArgs

    for options, flag in ((TrainArgs(learning_rate=float("inf")), "--learning-rate"),
                          (DecodeArgs(temperature=float("nan")), "--temperature"),
                          (SamplingArgs(eta=float("nan"), scheduler="ddim"), "--eta"),
                          (AutoencoderConfig(latent_noise=float("nan")), "--latent-noise")):
        with pytest.raises(InputError, match=f"{flag} (nan|inf) must be a finite number"):
            options.check()


def test_resume_from_a_checkpoint_of_a_run_on_another_store(tmp_path, world):
    other = make_store(tmp_path / "other.zarr", rows=40)  # same shape and latent space, other latents
    r = runner.invoke(app, ["train", str(other), "--out", str(tmp_path / "new" / "run"), *TRAIN_ARGS,
                            "--denoiser-config", json.dumps(TINY["mlp"]), "--max-steps", "4",
                            "--resume-from", str(world["run"] / "checkpoint-2")])
    line = one_line_error(r, 2)
    assert "store" in line and "pass the store it was trained on" in line
    assert not (tmp_path / "new").exists()  # no empty folder left behind (case 16)


def test_train_out_is_never_an_existing_store(tmp_path, world):
    store = _copy(world["store"], tmp_path / "s.zarr")
    before = snapshot(store)
    line = one_line_error(runner.invoke(app, ["train", str(world["fake"]), "--out", str(store)]), 2)
    assert "is a latent store, not a diffusion run" in line
    assert snapshot(store) == before


# ----- 11: malformed latent streams are one line, exit 2 ---------------------------------------------
def _raw_stream(header: dict, *frames: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + b"".join(frames)


def _frame(n: int, meta: bytes = b"", values: int | None = None) -> bytes:
    body = np.zeros(n * 4 * 16 if values is None else values, "<f4").tobytes()
    return struct.pack("<II", n, len(meta)) + meta + body


END = struct.pack("<II", 0, 0)


@pytest.mark.parametrize("name,header,frames,words", [
    ("frame count 0xFFFFFFFF", {}, [struct.pack("<II", 0xFFFFFFFF, 0)], "corrupt frame"),
    ("metadata a dict", {}, [_frame(1, b'{"a": 1}'), END], "not a list of 1 objects"),
    ("metadata list too short", {}, [_frame(2, b"[{}]"), END], "a list of 1, not a list of 2"),
    ("metadata not JSON", {}, [_frame(1, b"[{]"), END], "not JSON"),
    ("header dtype float64", {"dtype": "float64"}, [_frame(1), END], "dtype 'float64'"),
    ("header autoencoder an int", {"autoencoder": 7}, [_frame(1), END], "autoencoder 7"),
    ("header latent_shape negative", {"latent_shape": [-4, 16]}, [END], "latent_shape [-4, 16]"),
    ("cut short in a frame", {}, [_frame(2)[:100]], "cut short"),
])
def test_malformed_streams_are_one_line(world, name, header, frames, words):
    body = {**json.loads(world["header"].to_json()), **header}
    line = one_line_error(runner.invoke(app, ["decode", "-", *DECODE], input=_raw_stream(body, *frames)), 2)
    assert words in line, (name, line)


# ----- 12: hand-edited store attributes, a non-UTF-8 condition file, a NaN learning rate -----------
@pytest.mark.parametrize("attrs,words", [
    ({"latent_shape": [4, 8]}, "latent_shape [4, 8]"),
    ({"latent_shape": "4x16"}, "latent_shape is '4x16'"),
    ({"stats_mean": [0.0] * 5}, "stats_mean is not 64 finite numbers"),
    ({"stats_std": ["x"] * 64}, "stats_std is not a list of numbers"),
    ({"chunk_rows": 7}, "chunk_rows 7"),
])
def test_hand_edited_store_attributes_are_one_line(tmp_path, world, attrs, words):
    store = _copy(world["fake"], tmp_path / "s.zarr")
    zarr.open_group(str(store), mode="r+").attrs.update(attrs)
    for argv in (["train", str(store), "--out", str(tmp_path / "run")], ["decode", str(store)]):
        line = one_line_error(runner.invoke(app, argv), 1)
        assert words in line and "rebuild" in line, (argv, line)


def test_a_condition_file_that_is_not_utf8(tmp_path, world):
    bad = tmp_path / "conditions.txt"
    bad.write_bytes(b"name[Caf\xe9 Rouge]\n")
    line = one_line_error(runner.invoke(app, ["sample", str(world["run"]), "--condition-file", str(bad),
                                              "--out", str(tmp_path / "x.ldlm")]), 2)
    assert "--condition-file" in line and "UTF-8" in line


def test_a_nan_learning_rate_stops_before_any_work(tmp_path, world):
    r = runner.invoke(app, ["train-autoencoder", str(world["corpus"]), "--out", str(tmp_path / "ae"),
                            "--learning-rate", "nan"])
    line = one_line_error(r, 2)  # exactly one line: no progress line before it
    assert "--learning-rate nan" in line and not (tmp_path / "ae").exists()


# ----- 13: a full disk at a checkpoint is one clear line ---------------------------------------------
def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_a_full_disk_at_the_second_checkpoint_is_one_clear_line(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr")
    disk = tmp_path / "disk"
    real = _mount_tmpfs(disk, "3m")  # the review's 3 MiB tmpfs: checkpoint-2 fits, checkpoint-4 not
    try:
        if not real:  # what torch's zip writer raised on the real full disk
            import torch

            save = torch.save

            def full(obj, f, *args, **kwargs):
                if "checkpoint-4" in str(f):
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                       "297024 vs 296916")
                return save(obj, f, *args, **kwargs)

            monkeypatch.setattr(torch, "save", full)
        args = ["train", str(store), "--out", str(disk / "run"), *TRAIN_ARGS, "--denoiser-config",
                json.dumps({"widths": [96, 48], "time_dim": 8}), "--max-steps", "4",
                "--checkpointing-steps", "2"]
        r = runner.invoke(app, args)
        line = error_line(r, 1)
        assert "unexpected" not in line.split("(")[0] and "checkpoint-4" in line, line
        assert "MiB free" in line and "--resume" in line
        run = disk / "run"
        assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
        assert not list(run.glob(".*tmp*")) and not (run / "ldlm_run.json").exists()
        if real:
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            r = runner.invoke(app, [*args, "--resume"])
            assert r.exit_code == 0, r.stderr
            assert (run / "ldlm_run.json").is_file()
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ----- 14: error messages are printed verbatim -------------------------------------------------------
def test_error_messages_keep_their_brackets(tmp_path, world):
    line = one_line_error(runner.invoke(app, ["encode", str(world["corpus"]), "--autoencoder", "/no/ae",
                                              "--store", str(tmp_path / "s.zarr"), "--text-column",
                                              "ref[bold]x"]), 2)
    assert "'ref[bold]x'" in line
    line = one_line_error(runner.invoke(app, ["decode", str(tmp_path / "d[red].csv")]), 2)
    assert "d[red].csv" in line
    mr = "name[The Eagle], eatType[coffee shop]"
    line = one_line_error(runner.invoke(app, ["decode", str(tmp_path / f"{mr}.ldlm")]), 2)
    assert mr in line


# ----- 15: a label column of texts is warned about ------------------------------------------------------
def test_a_label_column_that_holds_texts_is_warned_about(tmp_path, world):
    data = tmp_path / "mr.csv"
    foods = ["Thai", "French", "Indian"]
    data.write_text("text,mr,topic\n" + "".join(
        f'"{CORPUS[i % 10]} {i}","name[Place {i}], food[{foods[i % 3]}]",{foods[i % 3]}\n'
        for i in range(60)), encoding="utf-8")
    base = ["encode", str(data), "--autoencoder", str(world["ae"]), "--device", "cpu", "--store"]
    r = runner.invoke(app, [*base, str(tmp_path / "mr.zarr"), "--condition-column", "mr"])
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "60 distinct key[value] texts" in r.stderr
    assert "--condition-type text" in r.stderr
    r = runner.invoke(app, [*base, str(tmp_path / "topic.zarr"), "--condition-column", "topic"])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr


# ----- 16: messages that mislead, folders left behind, SIGTERM ------------------------------------------
def test_empty_data_and_reference_files(tmp_path, world):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    line = one_line_error(runner.invoke(app, ["encode", str(empty), "--autoencoder", str(world["ae"]),
                                              "--store", str(tmp_path / "s.zarr")]), 2)
    assert "empty (0 bytes)" in line and "DATA" in line
    line = one_line_error(runner.invoke(app, ["train-autoencoder", str(empty), "--out",
                                              str(tmp_path / "ae")]), 2)
    assert "empty (0 bytes)" in line
    gen = tmp_path / "gen.txt"
    gen.write_text("a generated text\n", encoding="utf-8")
    line = one_line_error(runner.invoke(app, ["evaluate", str(gen), "--references", str(empty)]), 2)
    assert "--references" in line and "empty (0 bytes)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "gen.txt"]


def _python_ldlm(args: list, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "ldlm", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_library_logs_do_not_print_beside_the_error(tmp_path, world):
    run = _copy(world["run"], tmp_path / "run")
    for config in (run / "denoiser" / "config.json", run / "scheduler" / "scheduler_config.json"):
        config.write_text(json.dumps({**json.loads(config.read_text()), "unexpected_key": 1}))
    (run / "denoiser" / "diffusion_pytorch_model.safetensors").unlink()
    r = _python_ldlm(["sample", run, "--num-samples", "2", *SAMPLE, "--out", tmp_path / "x.ldlm"])
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "damaged" in lines[0], r.stderr


def test_a_full_disk_names_the_output_file(tmp_path, world, monkeypatch):
    disk = tmp_path / "disk"
    real = _mount_tmpfs(disk, "1m")
    try:
        if not real:
            real_write = LatentWriter._write_frame

            def full(self, x, meta):
                if self.rows >= 1000:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_write(self, x, meta)

            monkeypatch.setattr(LatentWriter, "_write_frame", full)
        out = disk / "x.ldlm"
        r = runner.invoke(app, ["sample", str(world["run"]), "--num-samples", "8000", "--batch-size",
                                "1000", *SAMPLE, "--out", str(out)])
        line = one_line_error(r, 1)
        assert "No space left on device" in line and str(out) in line and "no file" not in line
        assert list(disk.iterdir()) == []
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_failures_leave_no_empty_folders(tmp_path, world):
    nan_store = _copy(world["store"], tmp_path / "nan.zarr")
    zarr.open_group(str(nan_store), mode="r+")["latents"][0:2] = np.inf
    one_line_error(runner.invoke(app, ["train", str(nan_store), "--out", str(tmp_path / "a" / "run")]), 1)
    cut = _stream(world["header"], (world["z"], None))[:-40]
    r = runner.invoke(app, ["decode", "-", *DECODE, "--out", str(tmp_path / "b" / "sub" / "x.txt")],
                      input=cut)
    one_line_error(r, 2)
    r = runner.invoke(app, ["train", str(world["fake"]), "--out", str(tmp_path / "c" / "run"), "--resume"])
    one_line_error(r, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.zarr"]


def test_sigterm_cleans_up_and_says_so(tmp_path, world):
    out = tmp_path / "x.ldlm"
    proc = Proc(["sample", world["run"], "--num-samples", "20000", "--num-inference-steps", "8",
                 "--scheduler", "ddim", "--batch-size", "100", "--device", "cpu", "--out", out],
                tmp_path / "logs")
    code = kill_when(proc, lambda: bool(list(tmp_path.glob(".x.ldlm.tmp-*"))), signal.SIGTERM, 0.2)
    assert code == 143, (code, proc.stderr[-2000:])
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert errors == ["Error: terminated (SIGTERM); nothing partial is kept (an --out file is written "
                      "whole or not at all) and there is nothing to resume; rerun the same command to "
                      "start again"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".x.ldlm*"))


# ----- 18: an autoencoder folder cannot carry code ------------------------------------------------
def test_an_autoencoders_tokenizer_code_never_runs(tmp_path, world):
    evil = _copy(world["ae"], tmp_path / "ae")
    marker = tmp_path / "ran"
    for side in ("encoder_tokenizer", "decoder_tokenizer"):
        config = evil / side / "tokenizer_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "tokenizer_class": "EvilTokenizer",
                                      "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}}))
        (evil / side / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                             "from transformers import PreTrainedTokenizerFast\n"
                                             "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n")
    r = runner.invoke(app, ["decode", str(world["latents"]), "--autoencoder", str(evil), *DECODE],
                      input="y\n")
    assert not marker.exists(), r.stdout + r.stderr
    assert r.exit_code in (0, 2), r.stderr  # loaded with the library's own class, or refused in one line
    assert "trust_remote_code" not in r.stdout


class _RunsCode:
    """A pickle that creates a file when unpickled (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ----- 17, 19: a checkpoint folder cannot carry code ------------------------------------------
def test_resume_runs_no_code_from_a_crafted_checkpoint(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    out = tmp_path / "run"
    _tiny_run(store, out, 2)
    ckpt = out / "checkpoint-2"
    assert not list(ckpt.glob("custom_checkpoint_*"))  # ldlm's own state: JSON and safetensors
    assert {"ldlm_state_0.json", "ldlm_state_0.safetensors"} <= {p.name for p in ckpt.iterdir()}
    marker = tmp_path / "ran"
    # a pickle beside the state, named as accelerate names its custom states: refused unread
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(RuntimeFailure, match="checkpoint .*checkpoint-2' cannot be loaded"):
        _tiny_run(store, out, 4, resume="latest")
    assert not marker.exists()
    (ckpt / "custom_checkpoint_0.pkl").unlink()
    result = _tiny_run(store, out, 4, resume="latest")
    assert result.steps == 4
    # a pickle in place of a file accelerate does read (the RNG state): refused, not run
    for f in (out / "checkpoint-4").glob("random_states_*.pkl"):
        f.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(RuntimeFailure, match="checkpoint .*checkpoint-4' cannot be loaded"):
        _tiny_run(store, out, 6, resume="latest")
    assert not marker.exists()


def test_autoencoder_resume_runs_no_code(tmp_path, corpus_file):
    marker = tmp_path / "ran"
    out = tmp_path / "ae"
    base = ["train-autoencoder", str(corpus_file), "--out", str(out), "--size", "tiny",
            "--max-length", "16", "--latent-tokens", "2", "--latent-dim", "8", "--batch-size", "4",
            "--eval-rows", "0", "--checkpointing-steps", "2"]
    r = runner.invoke(app, [*base, "--max-steps", "2"])
    assert r.exit_code == 0, r.stderr
    for f in (out / "checkpoint-2").glob("random_states_*.pkl"):
        f.write_bytes(pickle.dumps(_RunsCode(marker)))
    r = runner.invoke(app, [*base, "--max-steps", "4", "--resume"])
    assert r.exit_code == 1 and "cannot be loaded" in r.stderr, r.stderr
    assert not marker.exists()


def test_state_dicts_round_trip_without_pickles(tmp_path):
    import torch

    from ldlm.loop import load_state_dict, save_state_dict

    state = {"step": 3, "lr": [0.1, 2e-5], "flag": True, "none": None, "name": "x",
             "gen": torch.Generator().manual_seed(1).get_state(),
             "nested": {"w": [torch.ones(2, 3), torch.zeros(1)], 7: "int key"}}
    save_state_dict(state, tmp_path / "s")
    back = load_state_dict(tmp_path / "s")
    assert back["step"] == 3 and back["lr"] == [0.1, 2e-5] and back["flag"] is True
    assert back["none"] is None and back["nested"][7] == "int key"
    assert torch.equal(back["gen"], state["gen"]) and torch.equal(back["nested"]["w"][0], torch.ones(2, 3))
    with pytest.raises(TypeError, match="holds a set"):
        save_state_dict({"bad": {1, 2}}, tmp_path / "t")


# ----- fuzz: the latent-stream reader --------------------------------------------------------------
_VALUES = [None, True, 0, -1, 3, 2**40, 1.5, float("nan"), "", "x", "float32", [], [1], [4, 16], [0, 16],
           [4, 16, 1], [2**20, 2**20], ["4", "16"], {}, {"a": 1}]


def _parts(rng: random.Random) -> tuple[dict, list[tuple[int, bytes, bytes]]]:
    """A valid stream as parts: its header and its frames (rows, metadata, latents)."""
    header = json.loads(LatentHeader("space", (2, 3), "/ae", {"run": "r"}).to_json())
    frames = []
    for _ in range(rng.randint(1, 3)):
        n = rng.randint(1, 4)
        meta = json.dumps([{"i": i} for i in range(n)]).encode() if rng.random() < 0.5 else b""
        frames.append((n, meta, rng.choice([np.zeros, np.ones])((n, 2, 3), "<f4").tobytes()))
    return header, frames


def _join(header: dict, frames: list[tuple[int, bytes, bytes]], end: bool = True) -> bytes:
    raw = json.dumps(header).encode()
    body = b"".join(struct.pack("<II", n, len(meta)) + meta + x for n, meta, x in frames)
    return MAGIC + struct.pack("<I", len(raw)) + raw + body + (END if end else b"")


def _mutated(rng: random.Random) -> bytes:
    header, frames = _parts(rng)
    op = rng.randrange(9)
    if op == 0:  # a header field of the wrong type or value
        for key in rng.sample([*header, "extra"], rng.randint(1, 3)):
            header[key] = rng.choice(_VALUES)
    elif op == 1:  # metadata that is any JSON at all
        i = rng.randrange(len(frames))
        n, _, x = frames[i]
        frames[i] = (n, json.dumps(rng.choice([*_VALUES, [{}] * (n + 1), [{}] * n, [[]] * n])).encode(), x)
    data = bytearray(_join(header, frames, end=op != 2))  # 2: no end frame
    if op == 3:  # random bytes changed
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op == 4:  # cut anywhere
        del data[rng.randrange(len(data)):]
    elif op == 5:  # a length field set to an extreme
        at = rng.randrange(len(data) - 4)
        data[at:at + 4] = struct.pack("<I", rng.choice([0, 1, 2**31, 2**32 - 1, len(data)]))
    elif op == 6:  # random bytes inserted
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 7:  # another stream after it, of this or another space, or damaged
        other_header, other_frames = _parts(rng)
        if rng.random() < 0.5:
            other_header["latent_space"] = "another"
        data += _join(other_header, other_frames)[: None if rng.random() < 0.7 else rng.randrange(40)]
    elif op == 8:  # NaN or inf among the latents
        n, meta, x = frames[0]
        bad = np.frombuffer(x, "<f4").copy()
        bad[rng.randrange(len(bad))] = rng.choice([np.nan, np.inf, -np.inf])
        data = bytearray(_join(header, [(n, meta, bad.tobytes()), *frames[1:]]))
    return bytes(data)


def _read_all(data: bytes) -> int:
    """The rows of a stream, every yielded frame checked; InputError passes through."""
    source = open_latents(None, stdin=io.BytesIO(data))
    rows = 0
    for x, meta in source.frames:
        assert x.dtype == np.float32 and x.shape[1:] == tuple(source.latent_shape) and len(x) > 0
        assert np.isfinite(x).all()
        assert meta is None or (len(meta) == len(x) and all(isinstance(m, dict) for m in meta))
        rows += len(x)
    return rows


def test_fuzz_the_latent_stream_reader():
    """Random and mutated streams (seeded): a correct read or one InputError, nothing else."""
    rng = random.Random(2021)
    outcomes = {"read": 0, "refused": 0}
    started = time.perf_counter()
    for _ in range(20000):
        data = _mutated(rng) if rng.random() < 0.9 else bytes(rng.randrange(256) for _ in range(64))
        try:
            _read_all(data)
            outcomes["read"] += 1
        except InputError as exc:
            assert len(str(exc).splitlines()) == 1
            outcomes["refused"] += 1
    for _ in range(200):  # valid streams read whole, concatenated ones too
        parts = [_parts(rng) for _ in range(rng.randint(1, 3))]
        for header, _ in parts:
            header["latent_space"] = "space"
        assert _read_all(b"".join(_join(h, f) for h, f in parts)) == sum(
            n for _, frames in parts for n, _, _ in frames)
    assert outcomes["read"] > 500 and outcomes["refused"] > 5000, outcomes
    assert time.perf_counter() - started < 30


# ----- fuzz: the slot parser ------------------------------------------------------------------------
# the parser it replaced (issue 21, case 3), as the oracle on inputs short enough for it to end
_OLD_SLOT = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]\s*")
_OLD_SLOTS = re.compile(r"(?:\s*[^,\[\]]+?\s*\[[^\]]*\]\s*)(?:,(?:\s*[^,\[\]]+?\s*\[[^\]]*\]\s*))*")
_WORD = re.compile(r"\w+|[^\w\s]")
_PIECES = ["name", "food", "eatType", " ", "  ", ",", ", ", "[", "]", "x", "The Eagle", "[Thai]", "]]",
           "[[", "\t", "café", "name[Alimentum]", ", food[Thai]"]


def _old_tokenize(text: str) -> list[str]:
    if _OLD_SLOTS.fullmatch(text):
        return [f"{k}[{v.strip()}]" for k, v in _OLD_SLOT.findall(text)]
    return _WORD.findall(text)


def test_fuzz_the_slot_parser():
    """Random MR-like strings (seeded): the same tokens as the old parser where it ends, and
    linear time on long ones."""
    from ldlm.conditions import slot_values

    rng = random.Random(2021)
    slotted = 0
    for i in range(6000):
        if i % 2:  # anything made of the pieces
            text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 10)))
        else:  # slots, joined well or badly
            slots = [f"{rng.choice(['name', ' food', 'area ', ''])}[{rng.choice(['x', ' The Eagle ', ''])}]"
                     for _ in range(rng.randint(1, 5))]
            text = "".join(s + rng.choice([", ", ",", " , ", "", ",,", " "]) for s in slots)
            text = text[: rng.randint(0, len(text))] if rng.random() < 0.3 else text.rstrip(", ")
        tokens = tokenize_condition(text)
        assert tokens == _old_tokenize(text), text
        slotted += bool(slot_values(text))
    assert slotted > 400  # the strings reach the slot path, not only the word path
    for pieces in (2_000, 20_000):  # 10x the length, about 10x the time
        texts = ["".join(rng.choice(_PIECES) for _ in range(pieces)) for _ in range(5)]
        for _ in range(5):  # long slot lists with one defect: what made the regex backtrack
            text = ", ".join(f"name[x{i}]" for i in range(pieces // 4))
            at = rng.randrange(len(text))
            defect = rng.choice(["", ",", "[", "]", ", ,"])
            texts.append(text[:at] + defect + text[at + 1:] + rng.choice([",", ""]))
        started = time.perf_counter()
        for text in texts:
            tokenize_condition(text)
            slot_values(text)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, (pieces, elapsed)

