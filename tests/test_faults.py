"""Fault injection: real `python -m ldlm` processes killed with SIGKILL and SIGINT at seeded
random points, and full disks, then the promises checked.

- encode: every rerun resumes; the finished store equals a clean run's bit for bit; a store
  that `ldlm info` calls complete is complete.
- train-autoencoder, train: no checkpoint or final model is ever torn; `--resume` goes on
  from the newest whole checkpoint; the resumed run ends where an uninterrupted one does.
- sample --out, decode --out: the whole file or none of it.
- SIGINT: exit 130 and one `Error:` line, no traceback.
- ENOSPC during encode and during a checkpoint: one clear line, the previous state intact,
  and a rerun after space is freed completes.

The processes are forked from a pre-imported zygote (tests/zygote.py: the same entry as
`python -m ldlm`, without paying the imports each time); LDLM_TEST_REAL_PROCESSES=1 starts
each one with `python -m ldlm` instead.

Kill points wait for a progress marker (done chunks, a checkpoint folder, a temporary output
file) and then a seeded random delay; `LDLM_FAULT_SEED` replays a failure.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.autoencoder.train import CHECKPOINT_FILE as AE_MARKER
from ldlm.cli import app
from ldlm.info import describe
from ldlm.latent_file import read_frames, read_header
from ldlm.store import LatentStore, is_store
from ldlm.train import CHECKPOINT_FILE as RUN_MARKER
from tests.conftest import CORPUS, one_line_error
from tests.test_train_sample import make_store
from tests.zygote import start_ldlm


def error_line(result, code: int) -> str:
    """Exit `code`, exactly one `Error:` line on stderr (progress lines may precede it), no
    traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    errors = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]

SEED = int(os.environ.get("LDLM_FAULT_SEED", "20261123"))
KILLS = 10  # kill points per command
runner = CliRunner()

AE_ARGS = ["--size", "tiny", "--max-length", "24", "--latent-tokens", "2", "--latent-dim", "8",
           "--batch-size", "8", "--eval-rows", "4", "--learning-rate", "3e-3"]
TRAIN_ARGS = ["--size", "tiny", "--denoiser-config", '{"widths": [16, 8], "time_dim": 8}',
              "--batch-size", "8", "--lr-warmup-steps", "1", "--learning-rate", "1e-3",
              "--eval-samples", "4", "--eval-inference-steps", "2", "--save-samples-epochs", "100",
              "--save-model-epochs", "100"]


# ----- processes ---------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1"}


class Proc:
    """`python -m ldlm ARGS` with stdout and stderr in files (no pipe can fill up): forked from
    a pre-imported zygote (tests/zygote.py: the start-ups were most of these tests' cost), or a
    real process under LDLM_TEST_REAL_PROCESSES=1; `p` is a Popen or behaves as one."""

    def __init__(self, args: list[str], logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("*.err")))
        self.out_path, self.err_path = logs / f"{n}.out", logs / f"{n}.err"
        self.args = args
        self.p = start_ldlm(args, _env(), self.out_path, self.err_path)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def run_ldlm(args: list, logs: Path) -> Proc:
    """Run to the end; fail with its stderr unless it exits 0."""
    proc = Proc(args, logs)
    code = proc.p.wait(timeout=600)
    assert code == 0, (args, code, proc.stderr[-3000:])
    return proc


def kill_when(proc: Proc, ready: Callable[[], bool], sig: int, delay: float,
              timeout: float = 300) -> int:
    """Wait for `ready()` (a progress marker), then `delay` seconds, then send `sig`.

    Returns the exit code (0 when the process finished before the kill point)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.p.poll() is not None:
            return proc.p.returncode
        if time.monotonic() > deadline:
            proc.p.kill()
            pytest.fail(f"no progress marker after {timeout}s: {proc.args}\n{proc.stderr[-2000:]}")
        time.sleep(0.01)
    time.sleep(delay)
    if proc.p.poll() is None:
        proc.p.send_signal(sig)
    return proc.p.wait(timeout=300)


def check_exit(proc: Proc, code: int, sig: int) -> bool:
    """The signal's promised exit; True when the process was killed (not already done)."""
    if code == 0:
        return False
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, (code, proc.stderr[-2000:])
    else:
        assert code == 130, (code, proc.stderr[-2000:])
        errors = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
        command = [str(a) for a in proc.args]
        if command[0] in ("train", "train-autoencoder"):  # the exact command line that resumes
            resume = [a for a in command if a != "--overwrite"]
            resume += [] if "--resume" in resume or "--resume-from" in resume else ["--resume"]
            want = f"resume with: ldlm {shlex.join(resume)}"
        else:
            want = "rerun the same command to resume"
        note = f"finished work is kept; {want}"
        if command[0] in ("sample", "decode"):  # nothing partial to keep, nothing to resume
            note = ("nothing partial is kept (an --out file is written whole or not at all) and there is "
                    "nothing to resume; rerun the same command to start again")
        assert errors == [f"Error: interrupted; {note}"], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    return True


def plan(rng: random.Random) -> list[int]:
    """KILLS signals, half SIGKILL and half SIGINT, in a seeded order."""
    sigs = [signal.SIGKILL, signal.SIGINT] * (KILLS // 2)
    rng.shuffle(sigs)
    return sigs


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*tmp*"))


# ----- encode ------------------------------------------------------------------------------
def _done(store: Path) -> int:
    c = store / "done" / "c"
    return len(list(c.iterdir())) if c.is_dir() else 0


def _same_store(a: Path, b: Path) -> None:
    sa, sb = LatentStore.open(a), LatentStore.open(b)
    assert sa.read_latents().tobytes() == sb.read_latents().tobytes()
    assert sa.read_texts() == sb.read_texts()
    assert sa.array("lengths")[:].tobytes() == sb.array("lengths")[:].tobytes()
    assert [x.tobytes() for x in sa.stats()] == [x.tobytes() for x in sb.stats()]
    skip = {"autoencoder"}
    assert {k: v for k, v in sa.attrs.items() if k not in skip} == {
        k: v for k, v in sb.attrs.items() if k not in skip}


@pytest.mark.slow
def test_encode_killed_ten_times_resumes_to_the_clean_store(tmp_path, tiny_ae):
    rng = random.Random(SEED)
    data = tmp_path / "rows.txt"
    lines = [f"{CORPUS[i % len(CORPUS)]} number {i}" for i in range(1200)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ["encode", data, "--autoencoder", tiny_ae, "--batch-size", "8", "--chunk-rows", "16",
              "--device", "cpu", "--store"]
    chunks = 75
    clean, store = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    run_ldlm([*common, clean], tmp_path / "logs")
    targets = sorted(rng.sample(range(1, chunks + 1), KILLS))
    killed = 0
    for target, sig in zip(targets, plan(rng), strict=True):
        at_start = _done(store)
        proc = Proc([*common, store], tmp_path / "logs")
        # progress marker: `target` chunks done, and at least one by this process
        code = kill_when(proc, lambda t=target, s=at_start: _done(store) >= max(t, s + 1), sig,
                         rng.uniform(0, 0.08))
        killed += check_exit(proc, code, sig)
        assert is_store(str(store)), "a killed encode left no store to resume"
        facts = describe(str(store))
        if facts["complete"]:  # complete means complete: every row, the statistics
            _same_store(clean, store)
            if code == 0:  # it ran to the end before the kill point (a starved poller):
                shutil.rmtree(store)  # start afresh, so the later kills still land mid-run
        else:
            s = LatentStore.open(store, require_complete=False)
            with pytest.raises(Exception, match="incomplete"):
                LatentStore.open(store)
            assert not s.complete and facts["chunks_done"] == f"{s.progress()[0]}/{chunks}"
    run_ldlm([*common, store], tmp_path / "logs")
    _same_store(clean, store)
    info = run_ldlm(["info", store, "--json"], tmp_path / "logs")
    assert json.loads(info.stdout)["complete"] is True
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} kills landed before the end"
    _record("encode", killed)


# ----- train-autoencoder -------------------------------------------------------------------
def _check_ae_folder(out: Path) -> None:
    """No torn checkpoint, no torn model."""
    for ckpt in out.glob("checkpoint-*"):
        names = {p.name for p in ckpt.iterdir()}
        assert {AE_MARKER, "model.safetensors", "optimizer.bin", "ldlm_state_0.json",
                "ldlm_state_0.safetensors", "encoder_tokenizer", "decoder_tokenizer"} <= names, (ckpt, names)
    if (out / "config.json").exists():
        load_autoencoder(out)  # a model under the final name loads whole
        assert describe(str(out))["kind"] == "autoencoder"
    elif out.exists() and any(out.glob("checkpoint-*")):
        assert describe(str(out))["kind"] == "autoencoder training (unfinished)"


def _latest_step(out: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")]
    return max(steps, default=0)


def _pace(clean: Path, final: str) -> tuple[float, float]:
    """How fast a clean run went, from the times its files were written: (seconds between its
    last kept checkpoints, seconds from the last checkpoint to `final`), so that kill delays
    land in the same phase on a fast machine and a slow one."""
    times = sorted(p.stat().st_mtime for p in clean.glob("checkpoint-*"))
    interval = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.05
    return max(interval, 0.005), max((clean / final).stat().st_mtime - times[-1], 0.005)


def _training(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["config"]["extra"]["training"]


@pytest.mark.slow
def test_train_autoencoder_killed_ten_times_resumes_to_the_same_loss(tmp_path, corpus_file):
    rng = random.Random(SEED + 1)
    steps, every = 48, 4
    common = ["train-autoencoder", corpus_file, *AE_ARGS, "--max-steps", steps,
              "--checkpointing-steps", every, "--out"]
    clean, out = tmp_path / "clean", tmp_path / "killed"
    run_ldlm([*common, clean], tmp_path / "logs")
    # delays in units of the clean run's pace: within the next checkpoint interval (a step or a
    # save), or within the evaluation and final save after the last checkpoint
    interval, tail = _pace(clean, "config.json")
    targets = sorted(rng.sample(range(every, steps + 1, every), KILLS))
    killed = 0
    for target, sig in zip(targets, plan(rng), strict=True):
        at_start = _latest_step(out) if out.exists() else 0
        resume = ["--resume"] if at_start else []
        proc = Proc([*common, out, *resume], tmp_path / "logs")
        if at_start >= steps:  # training is over: kill during the evaluation or the final save
            code = kill_when(proc, lambda p=proc: "reconstructing" in p.stderr, sig,
                             rng.uniform(0, tail))
        else:  # marker: a new checkpoint at or past `target`; the delay may reach the final save
            code = kill_when(proc, lambda t=target, s=at_start: out.exists() and _latest_step(out) >= max(
                t, s + 1), sig, rng.uniform(0, tail if target == steps else interval))
        killed += check_exit(proc, code, sig)
        _check_ae_folder(out)
    run_ldlm([*common, out, "--resume"], tmp_path / "logs")
    _check_ae_folder(out)
    a, b = _training(clean), _training(out)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5, abs=1e-6)
    wa, wb = load_file(str(clean / "model.safetensors")), load_file(str(out / "model.safetensors"))
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], atol=1e-5, rtol=1e-5, err_msg=name)
    # a kill that comes after a tiny run has finished does not land; delays scaled to the clean
    # run's pace make most land on any machine: at least half must, and every one is checked
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} kills landed before the end"
    _record("train-autoencoder", killed)


# ----- train ---------------------------------------------------------------------------------
def _check_run_folder(run: Path) -> None:
    from ldlm.sample import load_run

    for ckpt in run.glob("checkpoint-*"):
        names = {p.name for p in ckpt.iterdir()}
        assert {RUN_MARKER, "model.safetensors", "optimizer.bin"} <= names, (ckpt, names)
    if (run / "ldlm_run.json").exists():
        load_run(run)  # a finished run loads whole
    if (run / "denoiser").exists():
        assert (run / "denoiser" / "config.json").is_file()


def _final_loss(proc: Proc) -> float:
    return float(proc.stdout.split(" loss ")[1].split(",")[0].rstrip(")\n"))


@pytest.mark.slow
def test_train_killed_ten_times_resumes_to_the_same_model(tmp_path):
    rng = random.Random(SEED + 2)
    store = make_store(tmp_path / "fake.zarr")
    steps, every = 60, 5
    common = ["train", store, *TRAIN_ARGS, "--max-steps", steps, "--checkpointing-steps", every,
              "--out"]
    clean, run = tmp_path / "clean", tmp_path / "killed"
    first = run_ldlm([*common, clean], tmp_path / "logs")
    interval, tail = _pace(clean, "ldlm_run.json")  # kill delays at the clean run's pace
    targets = sorted(rng.sample(range(every, steps + 1, every), KILLS))
    killed = 0
    for target, sig in zip(targets, plan(rng), strict=True):
        at_start = _latest_step(run) if run.exists() else 0
        resume = ["--resume"] if at_start else []
        proc = Proc([*common, run, *resume], tmp_path / "logs")
        if at_start >= steps:  # training is over: kill while the final samples and model are saved
            code = kill_when(proc, lambda p=proc: "resumed from" in p.stderr, sig, rng.uniform(0, tail))
        else:
            code = kill_when(proc, lambda t=target, s=at_start: run.exists() and _latest_step(run) >= max(
                t, s + 1), sig, rng.uniform(0, tail if target == steps else interval))
        killed += check_exit(proc, code, sig)
        _check_run_folder(run)
    last = run_ldlm([*common, run, "--resume"], tmp_path / "logs")
    _check_run_folder(run)
    name = "denoiser/diffusion_pytorch_model.safetensors"
    wa, wb = load_file(str(clean / name)), load_file(str(run / name))
    for key in wa:
        np.testing.assert_allclose(wb[key], wa[key], atol=1e-6, rtol=1e-5, err_msg=key)
    assert _final_loss(last) == pytest.approx(_final_loss(first), rel=1e-5)
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} kills landed before the end"
    _record("train", killed)


# ----- sample --out and decode --out: all or nothing ------------------------------------------
def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return -1


def _tmp_files(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.tmp-*"))


def _kill_output(tmp_path: Path, rng: random.Random, args: list, out: Path, name: str) -> None:
    """Kill `args` (which writes `out`) KILLS times at random points of its writing."""
    logs = tmp_path / "logs"
    clean = out.with_name("clean" + out.suffix)
    proc = Proc([*args, "--out", clean], logs)
    opened = None  # how long the clean run writes: from its temporary file to the rename
    while proc.p.poll() is None:
        if opened is None and _tmp_files(clean):
            opened = time.monotonic()
        time.sleep(0.005)
    assert proc.p.returncode == 0, proc.stderr[-2000:]
    span = time.monotonic() - (opened or time.monotonic())
    expected = clean.read_bytes()
    killed = 0
    for sig in plan(rng):
        out.unlink(missing_ok=True)
        proc = Proc([*args, "--out", out], logs)
        # marker: the temporary file holds a random share of the output (both commands write
        # it batch by batch), plus a random part of the time a clean run takes for 5%
        share = rng.uniform(0, 0.95) * len(expected)
        code = kill_when(proc, lambda s=share: any(_size(p) >= s for p in _tmp_files(out)), sig,
                         rng.uniform(0, 0.05 * span))
        killed += check_exit(proc, code, sig)
        if out.exists():  # the whole output or none of it
            assert out.read_bytes() == expected
        if sig == signal.SIGINT and code == 130:
            assert not _tmp_files(out), "SIGINT left a temporary file"
        for tmp in _tmp_files(out):  # what SIGKILL leaves (hidden)
            tmp.unlink()
    assert killed >= KILLS // 2, f"only {killed} kills landed before {name} finished"
    _record(name, killed)


@pytest.mark.slow
def test_sample_out_is_whole_or_absent(tmp_path):
    rng = random.Random(SEED + 3)
    store = make_store(tmp_path / "fake.zarr")
    run = tmp_path / "run"
    run_ldlm(["train", store, *TRAIN_ARGS, "--max-steps", "4", "--out", run], tmp_path / "logs")
    args = ["sample", run, "--num-samples", "20000", "--num-inference-steps", "8", "--scheduler",
            "ddim", "--batch-size", "100", "--seed", "3", "--device", "cpu"]
    _kill_output(tmp_path, rng, args, tmp_path / "samples.ldlm", "sample --out")
    with open(tmp_path / "clean.ldlm", "rb") as fh:
        header = read_header(fh, "clean")
        assert sum(len(x) for x, _ in read_frames(fh, header, "clean")) == 20000


@pytest.mark.slow
def test_decode_out_is_whole_or_absent(tmp_path, tiny_store):
    rng = random.Random(SEED + 4)
    args = ["decode", tiny_store, "--temperature", "0", "--max-new-tokens", "16", "--batch-size",
            "2", "--format", "jsonl", "--device", "cpu"]
    _kill_output(tmp_path, rng, args, tmp_path / "texts.jsonl", "decode --out")
    assert len((tmp_path / "clean.jsonl").read_text(encoding="utf-8").splitlines()) == 60


# ----- full disk ---------------------------------------------------------------------------
def _enospc_after(n: int):
    """A zarr LocalStore.set that fails with ENOSPC from its n-th call on."""
    from zarr.storage import LocalStore

    real = LocalStore.set
    calls = {"n": 0}

    async def set_(self, key, value):
        calls["n"] += 1
        if calls["n"] >= n:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(self.root) / key))
        return await real(self, key, value)

    return set_


def test_encode_on_a_full_disk_fails_clearly_and_resumes(tmp_path, tiny_ae, corpus_file, monkeypatch):
    from zarr.storage import LocalStore

    args = ["encode", str(corpus_file), "--autoencoder", str(tiny_ae), "--batch-size", "8",
            "--chunk-rows", "16", "--device", "cpu", "--store"]
    clean, store = tmp_path / "clean.zarr", tmp_path / "full.zarr"
    assert runner.invoke(app, [*args, str(clean)]).exit_code == 0
    with monkeypatch.context() as m:
        m.setattr(LocalStore, "set", _enospc_after(14))  # creation and a chunk or two fit
        r = runner.invoke(app, [*args, str(store)])
    line = one_line_error(r, 1)
    assert "No space left on device" in line and "free space" in line
    s = LatentStore.open(store, require_complete=False)
    done = s.progress()[0]
    assert not s.complete and done < s.num_chunks
    assert describe(str(store))["complete"] is False
    r = runner.invoke(app, [*args, str(store)])  # space freed: the rerun finishes
    assert r.exit_code == 0, r.stderr
    _same_store(clean, store)


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, corpus_file, monkeypatch):
    import torch

    out = tmp_path / "ae"
    args = ["train-autoencoder", str(corpus_file), *AE_ARGS, "--max-steps", "8",
            "--checkpointing-steps", "4", "--eval-rows", "0", "--out", str(out)]
    real = torch.save

    def full_disk(obj, f, *a, **kw):
        if "checkpoint-8" in str(f):  # checkpoint-4 fits, checkpoint-8 does not
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(obj, f, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk)
        r = runner.invoke(app, args)
    line = error_line(r, 1)
    assert "No space left on device" in line
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    assert not (out / "config.json").exists() and not leftovers(out)
    _check_ae_folder(out)
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.stderr
    assert load_autoencoder(out).latent_shape == (2, 8)
    assert _training(out)["resumed_from_step"] == 4


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
def test_encode_on_a_real_small_file_system(tmp_path, tiny_ae):
    """A 1 MiB tmpfs (where this machine lets us mount one): a real ENOSPC from the kernel."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        data = tmp_path / "rows.txt"
        data.write_text("\n".join(f"{CORPUS[i % 10]} {i}" for i in range(6000)), encoding="utf-8")
        args = ["encode", data, "--autoencoder", tiny_ae, "--batch-size", "64", "--chunk-rows",
                "256", "--device", "cpu", "--store"]
        proc = Proc([*args, disk / "s.zarr"], tmp_path / "logs")
        assert proc.p.wait(timeout=300) == 1
        errors = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(errors) == 1 and errors[0].startswith("Error:") and "No space left" in errors[0]
        s = LatentStore.open(disk / "s.zarr", require_complete=False)
        done = s.progress()[0]
        assert not s.complete and 0 < done < s.num_chunks
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
        run_ldlm([*args, disk / "s.zarr"], tmp_path / "logs")
        s = LatentStore.open(disk / "s.zarr")
        assert s.rows == 6000 and s.read_texts()[-1].endswith(" 5999")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ----- the record for the README table ---------------------------------------------------------
def _record(command: str, kills: int) -> None:
    path = os.environ.get("LDLM_FAULT_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"command": command, "kills_survived": kills, "seed": SEED}) + "\n")


# ----- train-autoencoder resume, in process (fast) ------------------------------------------
def test_train_autoencoder_resume_matches_an_uninterrupted_run(tmp_path):
    from ldlm.autoencoder import AutoencoderConfig
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import TextRows
    from ldlm.errors import InputError

    rows = TextRows(texts=list(CORPUS), source="t", split="train", column="text")
    spec = AutoencoderConfig(size="tiny", max_length=24, latent_tokens=2, latent_dim=8)

    def args(steps, **kw):
        return AutoencoderTrainArgs(max_steps=steps, batch_size=8, eval_rows=4, checkpointing_steps=5, **kw)

    clean, _ = train_autoencoder(rows, tmp_path / "a", spec, args(12))
    train_autoencoder(rows, tmp_path / "b", spec, args(5))
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-5"]
    with pytest.raises(InputError, match="batch_size 8, but this run has 4"):
        train_autoencoder(rows, tmp_path / "b", spec, AutoencoderTrainArgs(
            max_steps=12, batch_size=4, eval_rows=4, resume="latest"))
    (tmp_path / "b" / "config.json").unlink()  # as if killed before the model was saved
    assert describe(str(tmp_path / "b"))["kind"] == "autoencoder training (unfinished)"
    resumed, _ = train_autoencoder(rows, tmp_path / "b", spec, args(12, resume="latest"))
    a, b = clean.config.extra["training"], resumed.config.extra["training"]
    assert b["resumed_from_step"] == 5 and b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-6)
    assert resumed.fingerprint == clean.fingerprint
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == [
        "checkpoint-10", "checkpoint-12", "checkpoint-5"]
    assert describe(str(tmp_path / "b"))["kind"] == "autoencoder"


def test_decode_out_writes_what_stdout_shows(tmp_path, tiny_store):
    args = ["decode", str(tiny_store), "--temperature", "0", "--max-new-tokens", "8"]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.stderr
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "sub" / "texts.txt")])
    assert r.exit_code == 0 and r.stdout == ""
    assert (tmp_path / "sub" / "texts.txt").read_text(encoding="utf-8") == shown.stdout
    assert not leftovers(tmp_path / "sub")
