"""The second hostile round (issue 31), its data-loss, run-file, loader and damaged-JSON half:
one test (or a few) per case, numbered as in the issue, then a fuzz test of damaged JSON
artefacts read by `info`, `sample`, `decode` and `train --resume`.

Where the behaviour depends on a real process (a pipe between two commands, SIGTERM) the test
runs `python -m ldlm`; everything else goes through the CLI runner in-process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.classifier import ClassifierArgs, train_classifier
from ldlm.cli import app
from ldlm.conditions import ConditionSpec
from ldlm.latent_file import MAGIC, LatentHeader, open_latents, write_latent_file
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import CORPUS, one_line_error
from tests.test_faults import TRAIN_ARGS, Proc, kill_when
from tests.test_train_sample import FAST, TINY, make_store

runner = CliRunner()
SAMPLE = ["--num-inference-steps", "2", "--scheduler", "ddim", "--device", "cpu"]
DECODE = ["--temperature", "0", "--max-new-tokens", "4", "--device", "cpu"]
# resumes the world's run (the same denoiser and batch)
RESUME = [*TRAIN_ARGS, "--checkpointing-steps", "2", "--max-steps", "4", "--resume"]


def _train(store: Path, out: Path, steps: int, resume: str | None = None):
    return train_diffusion(store, out, TrainArgs(
        arch="mlp", denoiser=dict(TINY["mlp"]), **{**FAST, "max_steps": steps, "checkpointing_steps": 2},
        resume=resume))


def _classifier(root: Path) -> Path:
    """A condition classifier trained for a few steps on a store of fake latents with labels."""
    texts = [t for t in CORPUS]
    labels = ["a" if i % 2 else "b" for i in range(len(texts))]
    spec = ConditionSpec.build(labels, "label", "label")
    store = LatentStore.create(str(root / "clf.zarr"), rows=len(texts), latent_shape=(1, 2), chunk_rows=64,
                               attributes={"latent_space": "fake", "condition": spec.to_dict()})
    store.write_chunk(0, np.zeros((len(texts), 1, 2), "f4"), texts, np.zeros(len(texts)),
                      spec.encode(labels), labels)
    store.finalize()
    train_classifier(str(root / "clf.zarr"), root / "clf", ClassifierArgs(epochs=1, min_count=1, lm_order=2))
    return root / "clf"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_ae, corpus_file):
    """A run in tiny_ae's latent space (with a checkpoint, metrics and samples), its store, a
    latent file of tiny_ae's space, a classifier, and a run on a fake store."""
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    root = tmp_path_factory.mktemp("hostile2")
    store = root / "a.zarr"
    encode_dataset(load_texts(str(corpus_file)), tiny_ae, store, batch_size=8, chunk_rows=16)
    run = root / "run"
    _train(store, run, 2)
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:4]).numpy()
    header = LatentHeader(model.fingerprint, model.latent_shape, str(tiny_ae))
    latents = root / "a.ldlm"
    write_latent_file(latents, header, z)
    return {"root": root, "store": store, "run": run, "ae": Path(tiny_ae), "z": z, "header": header,
            "latents": latents, "classifier": _classifier(root), "corpus": Path(corpus_file)}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _python_ldlm(args: list, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "ldlm", *map(str, args)], capture_output=True, env=env,
                          timeout=300, **kw)


# ----- 1: decode --out never replaces a latent file ----------------------------------------------
def test_decode_out_never_replaces_a_latent_file(tmp_path, world):
    old = tmp_path / "old.ldlm"
    shutil.copy(world["latents"], old)
    before = old.read_bytes()
    r = runner.invoke(app, ["decode", str(world["latents"]), *DECODE, "--out", str(old)])
    line = one_line_error(r, 2)
    assert "old.ldlm" in line and "is a latent file" in line and "give another path" in line
    assert old.read_bytes() == before
    # a text file (the usual --out) is still written, and replaced on a rerun
    text = tmp_path / "out.txt"
    for _ in range(2):
        r = runner.invoke(app, ["decode", str(world["latents"]), *DECODE, "--out", str(text)])
        assert r.exit_code == 0, r.stderr
    assert len(text.read_text().splitlines()) == 4


# ----- 2: sample / interpolate --out replace a latent file only with --overwrite -------------------
def test_sample_out_keeps_an_existing_latent_file_without_overwrite(tmp_path, world):
    old = tmp_path / "old.ldlm"
    shutil.copy(world["latents"], old)
    before = old.read_bytes()
    args = ["sample", str(world["run"]), "--num-samples", "3", *SAMPLE, "--out", str(old)]
    line = one_line_error(runner.invoke(app, args), 2)
    assert "old.ldlm" in line and "--overwrite" in line
    assert old.read_bytes() == before
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.stderr
    assert sum(len(x) for x, _ in open_latents(str(old)).frames) == 3
    args = ["interpolate", "a cat", "a dog", "--autoencoder", str(world["ae"]), "--steps", "3",
            "--out", str(old)]
    line = one_line_error(runner.invoke(app, args), 2)
    assert "--overwrite" in line
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.stderr
    assert old.read_bytes()[:len(MAGIC)] == MAGIC


# ----- 9: `-` is standard output for every --out that writes a stream ------------------------------
def test_out_dash_is_stdout_through_a_real_pipe(tmp_path, world):
    sample = subprocess.Popen([sys.executable, "-m", "ldlm", "sample", str(world["run"]), "--num-samples",
                               "3", *SAMPLE, "--out", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    decode = _python_ldlm(["decode", *DECODE, "--out", "-"], stdin=sample.stdout, cwd=tmp_path)
    sample.stdout.close()
    assert sample.wait(timeout=300) == 0, sample.stderr.read()
    assert decode.returncode == 0, decode.stderr
    assert len(decode.stdout.decode().splitlines()) == 3
    assert not (tmp_path / "-").exists()


def test_out_dash_in_process(tmp_path, world, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["interpolate", "a cat", "a dog", "--autoencoder", str(world["ae"]),
                            "--steps", "3", "--out", "-"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(MAGIC)
    r = runner.invoke(app, ["decode", "-", *DECODE, "--out", "-"], input=r.stdout_bytes)
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3
    assert not (tmp_path / "-").exists()


# ----- 3: a run's own files stay inside the run; a torn log line is repaired -------------------
@pytest.mark.parametrize("name", ["metrics.jsonl", "samples"])
def test_resume_never_writes_through_a_link_out_of_the_run(tmp_path, world, name):
    run = _copy(world["run"], tmp_path / "run")
    outside = tmp_path / "outside"
    if name == "samples":
        outside.mkdir()
        shutil.rmtree(run / "samples")
    else:
        outside.write_text("someone else's file\n")
        (run / name).unlink()
    (run / name).symlink_to(outside)
    r = runner.invoke(app, ["train", str(world["store"]), "--out", str(run), *RESUME])
    line = one_line_error(r, 2)
    assert name in line and "symlink" in line and "remove the link" in line
    if name == "samples":
        assert list(outside.iterdir()) == []
    else:
        assert outside.read_text() == "someone else's file\n"
    assert not (run / "checkpoint-4").exists()


def test_a_torn_metrics_line_is_repaired_before_appending(tmp_path, world):
    run = _copy(world["run"], tmp_path / "run")
    metrics = run / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 3, "epo')  # a kill in the middle of a write
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0, r.stderr  # the torn line is skipped
    r = runner.invoke(app, ["train", str(world["store"]), "--out", str(run), *RESUME])
    assert r.exit_code == 0, r.stderr
    assert "torn line" in r.stderr
    lines = metrics.read_text().splitlines()
    assert metrics.read_text().startswith(whole)
    assert all(isinstance(json.loads(x), dict) for x in lines) and len(lines) > len(whole.splitlines())


# ----- 4: run folders check their format and version -----------------------------------------
def test_a_run_of_another_format_or_version_is_refused(tmp_path, world):
    for field, value, words in (("version", 2, "version 2"), ("format", "other", "format 'other'")):
        run = _copy(world["run"], tmp_path / f"run-{field}")
        meta = json.loads((run / "ldlm_run.json").read_text())
        (run / "ldlm_run.json").write_text(json.dumps({**meta, field: value}))
        for args in (["sample", str(run), "--num-samples", "2", *SAMPLE, "--out", str(tmp_path / "x.ldlm")],
                     ["info", str(run)]):
            line = one_line_error(runner.invoke(app, args), 2)
            assert words in line and "ldlm_run.json" in line, line
    assert not (tmp_path / "x.ldlm").exists()


# ----- 7: info reads an autoencoder as decode does ------------------------------------------
def test_info_refuses_an_autoencoder_that_decode_refuses(tmp_path, world, other_ae):
    cut = _copy(world["ae"], tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    swapped = _copy(world["ae"], tmp_path / "swapped")
    shutil.copy(other_ae / "model.safetensors", swapped / "model.safetensors")
    for ae in (cut, swapped):
        info = one_line_error(runner.invoke(app, ["info", str(ae)]), 2)
        decode = one_line_error(runner.invoke(app, ["decode", str(world["latents"]), "--autoencoder", str(ae),
                                                    *DECODE]), 2)
        assert str(ae) in info and str(ae) in decode
    assert "latent space" in one_line_error(runner.invoke(app, ["info", str(swapped)]), 2)
    r = runner.invoke(app, ["info", str(world["ae"]), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["latent_space"] == world["header"].latent_space


# ----- 11: arch changed by hand ---------------------------------------------------------------
@pytest.mark.parametrize("arch", ["unet2d", "transformer"])
def test_a_hand_edited_arch_is_one_line(tmp_path, world, arch):
    run = _copy(world["run"], tmp_path / "run")
    meta = json.loads((run / "ldlm_run.json").read_text())
    (run / "ldlm_run.json").write_text(json.dumps({**meta, "arch": arch}))
    for args in (["sample", str(run), "--num-samples", "2", *SAMPLE, "--out", str(tmp_path / "x.ldlm")],
                 ["info", str(run)]):
        line = one_line_error(runner.invoke(app, args), 1)
        assert "unexpected" not in line and f"arch {arch!r}" in line and "MLPDenoiser" in line


# ----- 12: info on damaged JSON (more in the fuzz test below) --------------------------------------
def test_info_on_damaged_json_is_one_line(tmp_path, world):
    cases = []
    run = _copy(world["run"], tmp_path / "cut")
    (run / "ldlm_run.json").write_text((run / "ldlm_run.json").read_text()[:50])
    cases.append((run, "ldlm_run.json"))
    run = _copy(world["run"], tmp_path / "list")
    (run / "ldlm_run.json").write_text("[1, 2]")
    cases.append((run, "ldlm_run.json"))
    run = _copy(world["run"], tmp_path / "link")
    (run / "ldlm_run.json").unlink()
    (run / "ldlm_run.json").symlink_to(world["corpus"])
    cases.append((run, "ldlm_run.json"))
    clf = _copy(world["classifier"], tmp_path / "clf")
    (clf / "ldlm_classifier.json").write_text("[]")
    cases.append((clf, "ldlm_classifier.json"))
    run = _copy(world["run"], tmp_path / "metrics")
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "fr\n{"step": 3}\n')  # torn, then more
    cases.append((run, "metrics.jsonl"))
    for path, name in cases:
        line = one_line_error(runner.invoke(app, ["info", str(path)]), 1)
        assert name in line and str(path) in line and "unexpected" not in line, line


# ----- 14: a damaged checkpoint state ----------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", None, [1], {"a": 1}, float("inf")])
def test_a_damaged_checkpoint_state_is_one_line(tmp_path, world, value):
    run = _copy(world["run"], tmp_path / "run")
    state = next(p for p in (run / "checkpoint-2").glob("ldlm_state_*.json") if '"spent"' in p.read_text())
    structure = json.loads(state.read_text())
    structure["__dict__"] = [["spent", value]]
    state.write_text(json.dumps(structure).replace("Infinity", "1e999"))
    r = runner.invoke(app, ["train", str(world["store"]), "--out", str(run), *RESUME])
    line = one_line_error(r, 1)
    assert state.name in line and "unexpected" not in line and "--resume-from" in line, line


# ----- 15: symlink loops ------------------------------------------------------------------------
def test_a_symlink_loop_is_named_as_output_and_as_input(tmp_path, world):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    as_output = [
        ["sample", str(world["run"]), "--num-samples", "2", *SAMPLE, "--out", str(loop)],
        ["train", str(world["store"]), "--out", str(loop), "--max-steps", "2"],
        ["encode", str(world["corpus"]), "--autoencoder", str(world["ae"]), "--store", str(loop)],
        ["decode", str(world["latents"]), *DECODE, "--out", str(loop / "x.txt")],
    ]
    for args in as_output:
        line = one_line_error(runner.invoke(app, args), 2)
        assert "symlink loop" in line and "unexpected" not in line, (args, line)
    as_input = [
        ["sample", str(loop), "--num-samples", "2", *SAMPLE, "--out", str(tmp_path / "x.ldlm")],
        ["decode", str(loop), *DECODE],
        ["info", str(loop)],
        ["train", str(loop), "--out", str(tmp_path / "run")],
        ["decode", str(world["latents"]), "--autoencoder", str(loop), *DECODE],
        ["encode", str(loop), "--autoencoder", str(world["ae"]), "--store", str(tmp_path / "s.zarr")],
    ]
    for args in as_input:
        line = one_line_error(runner.invoke(app, args), 2)
        assert "symlink loop" in line and "does not exist" not in line, (args, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]


# ----- messages that mislead ----------------------------------------------------------------------
def test_sigterm_during_decode_promises_no_resume(tmp_path, world):
    many = tmp_path / "many.ldlm"
    write_latent_file(many, world["header"], np.repeat(world["z"], 500, axis=0))  # 2,000 latents
    out = tmp_path / "x.txt"
    proc = Proc(["decode", many, "--temperature", "0", "--max-new-tokens", "16", "--batch-size", "4",
                 "--device", "cpu", "--out", out], tmp_path / "logs")
    code = kill_when(proc, lambda: bool(list(tmp_path.glob(".x.txt.tmp-*"))), signal.SIGTERM, 0.5)
    assert code == 143, (code, proc.stderr[-2000:])
    errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and "finished work is kept" not in errors[0], proc.stderr[-2000:]
    assert "nothing to resume" in errors[0] and "start again" in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".x.txt*"))


def test_train_on_a_store_still_being_encoded_says_so(tmp_path):
    store = make_store(tmp_path / "s.zarr", complete=False)
    line = one_line_error(runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "run")]), 2)
    assert "incomplete" in line and "may still be writing it" in line and "rerun `ldlm encode`" in line


# ----- fuzz: damaged JSON artefacts -------------------------------------------------------------
_VALUES = [None, True, 0, -1, 2.5, float("nan"), "", "abc", [], [1, "x"], {}, {"a": [1]}]


def _damages(rng: random.Random, text: str, n: int) -> list[tuple[str, object]]:
    """n damaged versions of the JSON file `text`: ("text", new content) or ("link", a target)."""
    value = json.loads(text)
    out: list[tuple[str, object]] = [("text", text[: len(text) // 2]), ("text", ""), ("text", "[]"),
                                     ("text", "not json"), ("text", json.dumps([value])), ("link", "corpus"),
                                     ("link", "loop"), ("link", "missing")]
    while len(out) < n:
        out.append(("text", json.dumps(_mutate(rng, value))))
    return out[:n] if n < len(out) else out


def _mutate(rng: random.Random, value):
    """`value` with one field somewhere replaced by a value of another type (or removed)."""
    if isinstance(value, dict) and value and rng.random() < 0.85:
        key = rng.choice(sorted(value, key=str))
        copy = dict(value)
        if rng.random() < 0.15:
            del copy[key]
        else:
            copy[key] = _mutate(rng, value[key])
        return copy
    if isinstance(value, list) and value and rng.random() < 0.7:
        copy = list(value)
        i = rng.randrange(len(copy))
        copy[i] = _mutate(rng, copy[i])
        return copy
    return rng.choice(_VALUES)


def _damage(path: Path, how: tuple[str, object], world) -> None:
    kind, what = how
    path.unlink()
    if kind == "text":
        path.write_text(what)
    elif what == "corpus":
        path.symlink_to(world["corpus"])
    elif what == "loop":
        path.symlink_to(path)
    else:
        path.symlink_to(path.parent / "nowhere.json")


def _read_or_one_line(result, case) -> None:
    """A correct read, or exactly one `Error:` line (exit 1 or 2) that is no 'unexpected ...'."""
    if result.exit_code == 0:
        return
    assert result.exit_code in (1, 2), (case, result.exit_code, result.stderr[-1500:])
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), (case, result.stderr[-1500:])
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr, (case, lines[0])


def test_fuzz_damaged_json_artefacts(tmp_path, world):
    rng = random.Random(31)
    out = tmp_path / "x.ldlm"
    sample = ["--num-samples", "2", *SAMPLE, "--out", str(out), "--overwrite"]
    train = ["train", str(world["store"]), "--out", "{ROOT}", *RESUME]
    # (artefact, file in it, damaged versions, commands that read it: {ROOT} is the damaged copy)
    targets = [
        ("run", "ldlm_run.json", 24, [["info", "{ROOT}"], ["sample", "{ROOT}", *sample]]),
        ("run", "denoiser/config.json", 8, [["sample", "{ROOT}", *sample]]),
        ("ae", "config.json", 20, [["info", "{ROOT}"],
                                   ["decode", str(world["latents"]), "--autoencoder", "{ROOT}", *DECODE]]),
        ("classifier", "ldlm_classifier.json", 12, [["info", "{ROOT}"]]),
        ("classifier", "config.json", 12, [["info", "{ROOT}"]]),
        ("run", "checkpoint-2/ldlm_state_1.json", 10, [train]),  # the budget clock
        ("run", "checkpoint-2/ldlm_state_3.json", 10, [train]),  # step, noise generator, losses
        ("run", "checkpoint-2/ldlm_checkpoint.json", 8, [train]),
    ]
    tried = 0
    for artefact, name, n, commands in targets:
        original = (world[artefact] / name).read_text()
        for i, how in enumerate(_damages(rng, original, n)):
            root = _copy(world[artefact], tmp_path / f"{artefact}-{name.replace('/', '_')}-{i}")
            _damage(root / name, how, world)
            for command in commands:
                args = [a.replace("{ROOT}", str(root)) for a in command]
                _read_or_one_line(runner.invoke(app, args), (name, how, args[0]))
                tried += 1
            shutil.rmtree(root)
    # a run's metrics log: torn, garbage, wrong types, lists, a link out of the run
    logs = ['{"step": 1}\n{"st', "garbage\n", '[1, 2]\n{"step": 2}\n', '{"frechet_distance": "abc"}\n',
            '{"frechet_distance": [1]}\n', "\n\n", '{"step": 1}\n\x00\x01\n{"step": 2}\n', ("link", "corpus"),
            ("link", "loop")]
    for i, log in enumerate(logs):
        root = _copy(world["run"], tmp_path / f"metrics-{i}")
        _damage(root / "metrics.jsonl", log if isinstance(log, tuple) else ("text", log), world)
        for args in (["info", str(root)], ["train", str(world["store"]), "--out", str(root), *RESUME]):
            _read_or_one_line(runner.invoke(app, args), ("metrics.jsonl", log, args[0]))
            tried += 1
        shutil.rmtree(root)
    assert tried > 150
