"""Bad input, command by command: a table of cases run through the CLI (Typer's runner, in
process), each asserting the exit code (2 input/usage, 1 runtime), exactly one line on
stderr that names the value and the fix, no traceback (unless LDLM_DEBUG=1), and no artefact
created or changed (every file and folder of the test's world: size and mtime).

The "read-only folder" cases run as root, which chmod does not stop: they use /proc/sys
(read-only for every user, root included) and a path under a regular file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ldlm.autoencoder import load_autoencoder
from ldlm.cli import app
from ldlm.latent_file import LatentHeader, write_latent_file
from ldlm.store import LatentStore
from tests.conftest import CORPUS
from tests.test_train_sample import make_store

runner = CliRunner()
READ_ONLY = Path("/proc/sys")  # read-only for root as well (EACCES / EROFS on create)


@dataclass
class World:
    """Artefacts made once for the whole table: three latent spaces and damaged copies."""

    root: Path
    ae: Path  # latent space A (tiny_ae), latents (4, 16)
    other_ae: Path  # latent space B, same shape
    store: Path  # a complete store of A
    run: Path  # a diffusion run of latent space C ("fake-space")
    files: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_ae, other_ae) -> World:
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset
    from ldlm.train import TrainArgs, train_diffusion

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("world")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    store = root / "a.zarr"
    encode_dataset(load_texts(str(corpus)), tiny_ae, store, batch_size=8, chunk_rows=16)
    fake = make_store(root / "c.zarr", rows=40)
    run = root / "run_c"
    train_diffusion(fake, run, TrainArgs(
        size="tiny", denoiser={"widths": [16, 8], "time_dim": 8}, max_steps=2, batch_size=8,
        lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2, checkpointing_steps=1))
    w = World(root, Path(tiny_ae), Path(other_ae), store, run)
    f = w.files
    f["corpus"] = corpus
    f["incomplete"] = make_store(root / "incomplete.zarr", rows=40, complete=False)
    f["no_latents"] = root / "no_latents.zarr"
    shutil.copytree(store, f["no_latents"])
    shutil.rmtree(f["no_latents"] / "latents")
    f["truncated"] = root / "truncated.zarr"
    shutil.copytree(store, f["truncated"])
    chunk = next(p for p in (f["truncated"] / "latents").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])
    f["bad_meta"] = root / "bad_meta.zarr"
    shutil.copytree(store, f["bad_meta"])
    (f["bad_meta"] / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    f["bad_array_meta"] = root / "bad_array_meta.zarr"
    shutil.copytree(store, f["bad_array_meta"])
    (f["bad_array_meta"] / "latents" / "zarr.json").write_text("not json")
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(CORPUS[:3]).numpy()
    header_a = LatentHeader(model.fingerprint, model.latent_shape, str(tiny_ae))
    f["good"] = root / "good.ldlm"
    write_latent_file(f["good"], header_a, z)
    f["nan"] = root / "nan.ldlm"
    bad = z.copy()
    bad[1, 0, 3] = np.nan
    write_latent_file(f["nan"], header_a, bad)
    f["inf"] = root / "inf.ldlm"
    bad[1, 0, 3] = np.inf
    write_latent_file(f["inf"], header_a, bad)
    f["space_b"] = root / "b.ldlm"
    other = load_autoencoder(other_ae)
    write_latent_file(f["space_b"], LatentHeader(other.fingerprint, other.latent_shape, str(other_ae)), z)
    f["space_c"] = root / "c.ldlm"
    write_latent_file(f["space_c"], LatentHeader("fake-space", (4, 16), "/no/ae"), z)
    f["lost_ae"] = root / "lost_ae.ldlm"
    write_latent_file(f["lost_ae"], LatentHeader(model.fingerprint, (4, 16), "/gone/ae"), z)
    f["bad_csv"] = root / "bad.csv"
    f["bad_csv"].write_bytes(b"\xff\xfe\x00\x00garbage\x00\x81\n\x00\x00\x9c,\x00\n")
    f["bad_json"] = root / "bad.jsonl"
    f["bad_json"].write_text('{"text": "a fine row"}\n{"text": "cut sh', encoding="utf-8")
    f["csv"] = root / "refs.csv"
    f["csv"].write_text("ref,mr\nthe cat sat,x\na dog ran,y\n", encoding="utf-8")
    f["blanks"] = root / "blanks.txt"
    f["blanks"].write_text("one text\n\n  \nanother text\n", encoding="utf-8")
    f["empty_txt"] = root / "empty.txt"
    f["empty_txt"].write_text("\n   \n\t\n", encoding="utf-8")
    f["docx"] = root / "notes.docx"
    f["docx"].write_text("not a dataset")
    f["plain"] = root / "plain.txt"
    f["plain"].write_text("just a text file\n")
    f["a_file"] = root / "a_file"
    f["a_file"].write_text("a regular file, not a folder")
    f["bad_ae"] = root / "bad_ae"
    f["bad_ae"].mkdir()
    (f["bad_ae"] / "config.json").write_text('{"config": {"encoder_config": {}}}')
    f["empty_run"] = root / "empty_run"
    f["empty_run"].mkdir()
    return w


def snapshot(*folders: Path) -> dict[str, tuple]:
    """Every path under `folders` with its kind, size and mtime (ns)."""
    seen: dict[str, tuple] = {}
    for folder in folders:
        if not folder.exists():
            continue
        seen[str(folder)] = ("d", folder.stat().st_mtime_ns)
        for p in folder.rglob("*"):
            st = p.stat()
            seen[str(p)] = ("d" if p.is_dir() else "f", st.st_size, st.st_mtime_ns)
    return seen


# ----- the table -----------------------------------------------------------------------------
# (id, argv with {placeholders}, exit code, words the error line must hold, stdin bytes or None)
def stream_bytes(w: World, cut: int | None = None) -> bytes:
    raw = w.files["good"].read_bytes()
    return raw if cut is None else raw[:cut]


CASES = [
    # train-autoencoder
    ("ae-missing-data", ["train-autoencoder", "{root}/nope.txt", "--out", "{out}"], 2,
     ["nope.txt", "does not exist"], None),
    ("ae-unreadable-extension", ["train-autoencoder", "{docx}", "--out", "{out}"], 2,
     ["notes.docx", "use one of"], None),
    ("ae-corrupt-csv", ["train-autoencoder", "{bad_csv}", "--out", "{out}"], 2,
     ["bad.csv", "check the file"], None),
    ("ae-corrupt-json", ["train-autoencoder", "{bad_json}", "--out", "{out}"], 2,
     ["bad.jsonl", "check the file"], None),
    ("ae-missing-column", ["train-autoencoder", "{csv}", "--out", "{out}"], 2,
     ["'text'", "--text-column"], None),
    ("ae-empty-texts", ["train-autoencoder", "{empty_txt}", "--out", "{out}"], 2,
     ["no usable text", "--text-column"], None),
    ("ae-max-steps-0", ["train-autoencoder", "{corpus}", "--out", "{out}", "--max-steps", "0"], 2,
     ["--max-steps 0", "at least 1"], None),
    ("ae-checkpointing-0-with-blank-rows", ["train-autoencoder", "{blanks}", "--out", "{out}",
                                           "--checkpointing-steps", "0"], 2,
     ["--checkpointing-steps 0", "at least 1"], None),
    ("ae-lr-negative", ["train-autoencoder", "{corpus}", "--out", "{out}", "--learning-rate", "-1"],
     2, ["--learning-rate -1", "> 0"], None),
    ("ae-mean-with-k", ["train-autoencoder", "{corpus}", "--out", "{out}", "--pooling", "mean",
                        "--latent-tokens", "4"], 2, ["--latent-tokens 4", "--pooling queries"], None),
    ("ae-resume-and-overwrite", ["train-autoencoder", "{corpus}", "--out", "{out}", "--resume",
                                 "--overwrite"], 2, ["--resume", "--overwrite"], None),
    ("ae-resume-nothing", ["train-autoencoder", "{corpus}", "--out", "{out}", "--resume"], 2,
     ["no checkpoint", "without --resume"], None),
    ("ae-fp16-on-cpu", ["train-autoencoder", "{corpus}", "--out", "{out}", "--mixed-precision",
                        "fp16"], 2, ["fp16", "bf16 or no"], None),
    ("ae-out-exists", ["train-autoencoder", "{corpus}", "--out", "{ae}"], 2,
     ["already exists", "--overwrite"], None),
    ("ae-out-under-file", ["train-autoencoder", "{corpus}", "--out", "{a_file}/ae"], 2,
     ["a_file", "not a folder"], None),
    ("ae-out-read-only", ["train-autoencoder", "{corpus}", "--out", "/proc/sys/ldlm-ae"], 2,
     ["/proc/sys", "writable folder"], None),
    ("ae-unknown-encoder-offline", ["train-autoencoder", "{corpus}", "--out", "{out}", "--size",
                                    "tiny", "--encoder", "nobody-xyz/no-such-encoder"], 2,
     ["nobody-xyz/no-such-encoder", "local model folder"], None),
    ("ae-unknown-dataset-offline", ["train-autoencoder", "nobody-xyz/no-such-dataset", "--out",
                                    "{out}"], 2, ["nobody-xyz/no-such-dataset", "HF_HUB_OFFLINE"], None),
    # encode
    ("enc-missing-ae", ["encode", "{corpus}", "--autoencoder", "{root}/no-ae", "--store", "{out}.zarr"],
     2, ["no-ae", "does not exist"], None),
    ("enc-ae-is-a-store", ["encode", "{corpus}", "--autoencoder", "{store}", "--store",
                           "{out}.zarr"], 2, ["a.zarr", "train-autoencoder"], None),
    ("enc-unknown-ae-offline", ["encode", "{corpus}", "--autoencoder", "nobody-xyz/no-ae", "--store",
                                "{out}.zarr"], 2, ["nobody-xyz/no-ae", "train-autoencoder"], None),
    ("enc-store-of-space-b", ["encode", "{corpus}", "--autoencoder", "{other_ae}", "--store",
                              "{store}"], 2, ["a.zarr", "--overwrite"], None),
    ("enc-store-is-a-file", ["encode", "{corpus}", "--autoencoder", "{ae}", "--store", "{a_file}"],
     2, ["a_file", "another"], None),
    ("enc-store-read-only", ["encode", "{corpus}", "--autoencoder", "{ae}", "--store",
                             "/proc/sys/ldlm.zarr"], 2, ["/proc/sys", "writable folder"], None),
    ("enc-batch-size-0", ["encode", "{corpus}", "--autoencoder", "{ae}", "--store", "{out}.zarr",
                          "--batch-size", "0"], 2, ["--batch-size 0", "at least 1"], None),
    ("enc-limit-0", ["encode", "{corpus}", "--autoencoder", "{ae}", "--store", "{out}.zarr",
                     "--limit", "0"], 2, ["--limit 0", "at least 1"], None),
    ("enc-missing-column", ["encode", "{csv}", "--autoencoder", "{ae}", "--store", "{out}.zarr"], 2,
     ["'text'", "--text-column"], None),
    ("enc-corrupt-json", ["encode", "{bad_json}", "--autoencoder", "{ae}", "--store", "{out}.zarr"],
     2, ["bad.jsonl", "check the file"], None),
    # decode
    ("dec-missing-file", ["decode", "{root}/none.ldlm"], 2, ["none.ldlm", "does not exist"], None),
    ("dec-garbage-stdin", ["decode"], 2, ["stdin", "not an ldlm latent stream"], b"\x00garbage" * 50),
    ("dec-cut-short-stdin", ["decode", "--autoencoder", "{ae}"], 2, ["stdin", "cut short"], "cut"),
    ("dec-cut-in-header", ["decode"], 2, ["stdin", "cut short inside its header"], "cut-header"),
    ("dec-empty-stdin", ["decode"], 2, ["stdin", "empty"], b""),
    ("dec-nan", ["decode", "{nan}", "--autoencoder", "{ae}"], 2, ["nan.ldlm", "NaN or inf"], None),
    ("dec-inf", ["decode", "{inf}", "--autoencoder", "{ae}"], 2, ["inf.ldlm", "NaN or inf"], None),
    ("dec-space-b-with-ae-a", ["decode", "{space_b}", "--autoencoder", "{ae}"], 2,
     ["b.ldlm", "latent space", "the autoencoder that made them"], None),
    ("dec-space-c-with-ae-b", ["decode", "{space_c}", "--autoencoder", "{other_ae}"], 2,
     ["fake-space", "the autoencoder that made them"], None),
    ("dec-store-a-with-ae-b", ["decode", "{store}", "--autoencoder", "{other_ae}"], 2,
     ["a.zarr", "latent space"], None),
    ("dec-ae-not-here", ["decode", "{lost_ae}"], 2, ["/gone/ae", "--autoencoder"], None),
    ("dec-store-bad-metadata", ["decode", "{bad_meta}", "--autoencoder", "{ae}"], 2,
     ["bad_meta.zarr", "store"], None),
    ("dec-store-no-latents", ["decode", "{no_latents}", "--autoencoder", "{ae}"], 1,
     ["no_latents.zarr", "latents", "--overwrite"], None),
    ("dec-store-truncated-chunk", ["decode", "{truncated}", "--autoencoder", "{ae}"], 1,
     ["truncated.zarr", "--overwrite"], None),
    ("dec-store-bad-array-meta", ["decode", "{bad_array_meta}", "--autoencoder", "{ae}"], 1,
     ["bad_array_meta.zarr", "--overwrite"], None),
    ("dec-incomplete-store", ["decode", "{incomplete}"], 2, ["incomplete", "ldlm encode"], None),
    ("dec-temperature-negative", ["decode", "{good}", "--temperature", "-1"], 2,
     ["--temperature -1", ">= 0"], None),
    ("dec-top-p-out-of-range", ["decode", "{good}", "--top-p", "1.5"], 2, ["--top-p 1.5", "(0, 1]"], None),
    ("dec-out-under-file", ["decode", "{good}", "--out", "{a_file}/texts.txt"], 2,
     ["a_file", "not a folder"], None),
    ("dec-out-read-only", ["decode", "{good}", "--out", "/proc/sys/texts.txt"], 2,
     ["/proc/sys", "writable folder"], None),
    # info
    ("info-missing", ["info", "{root}/nothing"], 2, ["nothing", "does not exist"], None),
    ("info-not-an-artefact", ["info", "{plain}"], 2, ["plain.txt", "not an ldlm artefact"], None),
    ("info-store-bad-metadata", ["info", "{bad_meta}"], 2, ["bad_meta.zarr", "not an ldlm artefact"],
     None),
    # read by the loader decode uses, so refused as decode refuses it (issue 31)
    ("info-damaged-ae-config", ["info", "{bad_ae}"], 2, ["bad_ae", "damaged config.json"], None),
    ("info-cut-short-file", ["info", "{root}/cut.ldlm"], 2, ["cut.ldlm", "cut short"], "file-cut"),
    # train
    ("train-missing-store", ["train", "{root}/none.zarr", "--out", "{out}"], 2,
     ["none.zarr", "ldlm encode"], None),
    ("train-incomplete-store", ["train", "{incomplete}", "--out", "{out}"], 2,
     ["incomplete", "rerun `ldlm encode`"], None),
    ("train-store-bad-metadata", ["train", "{bad_meta}", "--out", "{out}"], 2, ["bad_meta.zarr"], None),
    ("train-store-no-latents", ["train", "{no_latents}", "--out", "{out}"], 1,
     ["no_latents.zarr", "latents"], None),
    ("train-store-truncated-chunk", ["train", "{truncated}", "--out", "{out}", "--max-steps", "1",
                                     "--size", "tiny"], 1, ["truncated.zarr", "--overwrite"], None),
    ("train-max-steps-0", ["train", "{store}", "--out", "{out}", "--max-steps", "0"], 2,
     ["--max-steps 0", "at least 1"], None),
    ("train-adaln-with-unet2d", ["train", "{store}", "--out", "{out}", "--arch", "unet2d", "--adaln"], 2,
     ["--adaln", "--arch mlp or transformer"], None),
    ("train-denoiser-config-not-json", ["train", "{store}", "--out", "{out}", "--denoiser-config",
                                        "{widths"], 2, ["--denoiser-config", "JSON"], None),
    ("train-hub-id-without-push", ["train", "{store}", "--out", "{out}", "--hub-model-id", "me/x"],
     2, ["--hub-model-id", "--push-to-hub"], None),
    ("train-resume-store-a-into-run-c", ["train", "{store}", "--out", "{run}", "--resume", "--size",
                                         "tiny", "--denoiser-config",
                                         '{"widths": [16, 8], "time_dim": 8}', "--batch-size", "8"],
     2, ["latent_space", "new --out"], None),
    ("train-resume-from-missing", ["train", "{store}", "--out", "{out}", "--resume-from",
                                   "{root}/nope"], 2, ["nope", "checkpoint"], None),
    ("train-out-under-file", ["train", "{store}", "--out", "{a_file}/run"], 2,
     ["a_file", "not a folder"], None),
    ("train-out-read-only", ["train", "{store}", "--out", "/proc/sys/ldlm-run"], 2,
     ["/proc/sys", "writable folder"], None),
    # sample
    ("sample-missing-run", ["sample", "{root}/no-run", "--out", "{out}.ldlm"], 2,
     ["no-run", "ldlm train"], None),
    ("sample-run-without-model", ["sample", "{empty_run}", "--out", "{out}.ldlm"], 2,
     ["empty_run", "no trained model"], None),
    ("sample-num-samples-0", ["sample", "{run}", "--num-samples", "0", "--out", "{out}.ldlm"], 2,
     ["--num-samples 0", "at least 1"], None),
    ("sample-steps-out-of-range", ["sample", "{run}", "--num-inference-steps", "5000", "--out",
                                   "{out}.ldlm"], 2, ["--num-inference-steps 5000", "between 1"], None),
    ("sample-batch-size-0", ["sample", "{run}", "--batch-size", "0", "--out", "{out}.ldlm"], 2,
     ["--batch-size 0", "at least 1"], None),
    ("sample-out-under-file", ["sample", "{run}", "--num-inference-steps", "2", "--out",
                               "{a_file}/s.ldlm"], 2, ["a_file", "not a folder"], None),
    ("sample-out-read-only", ["sample", "{run}", "--num-inference-steps", "2", "--out",
                              "/proc/sys/s.ldlm"], 2, ["/proc/sys", "writable folder"], None),
    # quickstart
    ("quickstart-out-under-file", ["quickstart", "--out", "{a_file}/qs"], 2,
     ["a_file", "not a folder"], None),
    ("quickstart-out-read-only", ["quickstart", "--out", "/proc/sys/qs"], 2,
     ["/proc/sys", "writable folder"], None),
    ("quickstart-budget-clock", ["quickstart", "--out", "{out}", "--budget-clock", "sundial"], 2,
     ["--budget-clock 'sundial'", "wall, cpu"], None),
    ("quickstart-max-minutes-0", ["quickstart", "--out", "{out}", "--max-minutes", "0"], 2,
     ["--max-minutes 0", "positive"], None),
]


def _fill(arg: str, w: World, out: Path) -> str:
    names = {"root": w.root, "ae": w.ae, "other_ae": w.other_ae, "store": w.store, "run": w.run,
             "out": out, **w.files}
    for key, value in names.items():
        arg = arg.replace("{" + key + "}", str(value))
    return arg


def _stdin(kind, w: World):
    if kind == "cut":
        return stream_bytes(w, -30)
    if kind == "cut-header":
        return stream_bytes(w, 20)
    if kind == "file-cut":
        (w.root / "cut.ldlm").write_bytes(stream_bytes(w, -30))
        return None
    return kind


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path):
    name, argv, code, words, stdin = case
    stdin = _stdin(stdin, world)
    out = tmp_path / "out"
    args = [_fill(a, world, out) for a in argv]
    before = snapshot(world.root, world.ae, world.other_ae, tmp_path)
    r = runner.invoke(app, args, input=stdin)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.exit_code == code, (name, r.exit_code, r.stderr, r.stdout)
    assert len(lines) == 1 and lines[0].startswith("Error: "), (name, r.stderr)
    assert "Traceback" not in r.stderr
    for word in words:
        assert word in lines[0], (name, word, lines[0])
    assert r.stdout == "", (name, r.stdout)
    assert snapshot(world.root, world.ae, world.other_ae, tmp_path) == before, f"{name} changed files"


def test_at_least_thirty_cases_over_every_command():
    assert len(CASES) >= 30
    commands = {c[1][0] for c in CASES}
    assert commands == {"train-autoencoder", "encode", "decode", "info", "train", "sample",
                        "quickstart"}


def test_debug_variable_adds_the_traceback(world, monkeypatch):
    monkeypatch.setenv("LDLM_DEBUG", "1")
    r = runner.invoke(app, ["decode", str(world.files["nan"]), "--autoencoder", str(world.ae)])
    assert r.exit_code == 2
    assert "Traceback" in r.stderr and "Error: " in r.stderr


# ----- texts that are empty, huge, or in other scripts: accepted, counted, unchanged ------------
def test_empty_huge_and_any_script_texts_round_trip(tmp_path, world):
    texts = ["emoji 😀🎉👩‍👩‍👧 and 中文 and العربية and हिन्दी",
             "x" * 200_000,  # huge: truncated for the encoder, counted, stored whole
             "naïve café — “quotes” ‘and’ ½ ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
             "tab\tinside",
             "עברית ελληνικά русский 한국어 日本語"]
    data = tmp_path / "mixed.txt"
    data.write_text("\n".join([texts[0], "", "   ", *texts[1:]]) + "\n", encoding="utf-8")
    store = tmp_path / "mixed.zarr"
    r = runner.invoke(app, ["encode", str(data), "--autoencoder", str(world.ae), "--store",
                            str(store), "--batch-size", "2"])
    assert r.exit_code == 0, r.stderr
    assert "skipped 2 rows that are empty or not text" in r.stderr
    assert "warning:" in r.stderr and "truncated" in r.stderr
    s = LatentStore.open(store)
    assert s.read_texts() == texts  # byte for byte, whatever the script
    assert s.attrs["truncated_rows"] >= 1 and s.attrs["skipped_rows"] == 2
    assert s.array("lengths")[1] > load_autoencoder(world.ae).config.max_length
    facts = json.loads(runner.invoke(app, ["info", str(store), "--json"]).stdout)
    assert facts["truncated_rows"] == s.attrs["truncated_rows"] and facts["skipped_rows"] == 2
    r = runner.invoke(app, ["decode", str(store), "--format", "jsonl", "--temperature", "0",
                            "--max-new-tokens", "4"])
    assert [json.loads(x)["reference"] for x in r.stdout.splitlines()] == texts


def test_loader_reads_texts_on_demand_with_the_row_by_row_rules(tmp_path):
    from ldlm.data import ArrowTexts, load_texts

    lines = ["", "a", "  ", "b 😀", "c", "", "d"]
    f = tmp_path / "t.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = load_texts(str(f))
    assert isinstance(rows.texts, ArrowTexts)
    assert rows.texts == ["a", "b 😀", "c", "d"] and rows.skipped == 3
    assert rows.texts[1] == "b 😀" and rows.texts[-1] == "d" and rows.texts[1:3] == ["b 😀", "c"]
    assert list(rows.source_index) == [1, 3, 4, 6]
    limited = load_texts(str(f), limit=2)  # stops at the 2nd kept row: 2 skipped before it
    assert limited.texts == ["a", "b 😀"] and limited.skipped == 2
    assert rows.digest() != limited.digest()
