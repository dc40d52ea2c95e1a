import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ldlm.autoencoder import load_autoencoder
from ldlm.autoencoder.batching import encode_chunk
from ldlm.data import load_texts
from ldlm.encode import encode_dataset
from ldlm.errors import InputError
from ldlm.store import LatentStore


def _arrays(path):
    s = LatentStore.open(path)
    return s.read_latents(), s.read_texts(), s.array("lengths")[:], s.stats()


def _assert_same_store(a, b):
    xa, ta, la, (ma, sa) = _arrays(a)
    xb, tb, lb, (mb, sb) = _arrays(b)
    assert xa.tobytes() == xb.tobytes()  # bit for bit
    assert ta == tb
    np.testing.assert_array_equal(la, lb)
    assert ma.tobytes() == mb.tobytes() and sa.tobytes() == sb.tobytes()


def test_rows_land_in_input_order(tiny_store, tiny_ae, corpus_file):
    store = LatentStore.open(tiny_store)
    rows = load_texts(str(corpus_file))
    assert store.read_texts() == rows.texts
    model = load_autoencoder(tiny_ae)
    direct = model.encode_texts(rows.texts[:7]).numpy()
    np.testing.assert_allclose(store.read_latents(0, 7), direct, atol=1e-5, rtol=1e-4)
    a = store.attrs
    assert a["complete"] and a["latent_space"] == model.fingerprint
    assert a["rows"] == len(rows.texts) and a["column"] == "text" and a["split"] == "train"
    assert len(a["stats_mean"]) == model.latent_shape[0] * model.latent_shape[1]


def test_sorted_batches_match_unsorted(tiny_ae, corpus_file):
    model = load_autoencoder(tiny_ae)
    texts = load_texts(str(corpus_file)).texts[:20]
    sorted_z, lengths = encode_chunk(model, texts, batch_size=4, sort_by_length=True)
    plain_z, _ = encode_chunk(model, texts, batch_size=4, sort_by_length=False)
    np.testing.assert_allclose(sorted_z, plain_z, atol=1e-5, rtol=1e-4)
    assert (lengths > 0).all()


class _Interrupting:
    """Wraps the model; raises KeyboardInterrupt on the n-th encode call."""

    def __init__(self, model, n):
        self.model, self.n, self.calls = model, n, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.model.encode(*args, **kwargs)


@pytest.mark.parametrize("interrupt_at", [1, 3, 6])
def test_interrupted_encode_resumes_to_identical_store(tmp_path, tiny_ae, corpus_file, interrupt_at):
    rows = load_texts(str(corpus_file))
    clean = tmp_path / "clean.zarr"
    encode_dataset(rows, tiny_ae, clean, batch_size=8, chunk_rows=16)
    resumed = tmp_path / "resumed.zarr"
    model = _Interrupting(load_autoencoder(tiny_ae), interrupt_at)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(rows, tiny_ae, resumed, batch_size=8, chunk_rows=16, model=model)
    with pytest.raises(InputError, match="incomplete"):
        LatentStore.open(resumed)
    result = encode_dataset(rows, tiny_ae, resumed, batch_size=8, chunk_rows=16)
    assert 0 < result.encoded <= len(rows.texts)
    _assert_same_store(clean, resumed)
    again = encode_dataset(rows, tiny_ae, resumed, batch_size=8, chunk_rows=16)
    assert again.encoded == 0  # complete: nothing to do


def test_kill_9_then_resume_is_bit_identical(tmp_path, tiny_ae):
    """A real `ldlm encode` process killed with SIGKILL mid-run, then rerun."""
    data = tmp_path / "many.txt"
    data.write_text("\n".join(f"row {i} of the corpus with words {i * 7}" for i in range(3000)))
    args = [sys.executable, "-m", "ldlm", "encode", str(data), "--autoencoder", str(tiny_ae),
            "--batch-size", "16", "--chunk-rows", "64"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    subprocess.run([*args, "--store", str(clean)], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*args, "--store", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some chunks, but not all, are done
        done = list((killed / "done" / "c").glob("*")) if (killed / "done" / "c").exists() else []
        if len(done) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = LatentStore.open(killed, require_complete=False)
    assert not store.complete and 0 < store.progress()[0] < store.num_chunks
    info = subprocess.run([sys.executable, "-m", "ldlm", "info", str(killed), "--json"],
                          env=env, capture_output=True, text=True, check=True)
    assert '"complete": false' in info.stdout
    subprocess.run([*args, "--store", str(killed)], check=True, env=env, capture_output=True)
    _assert_same_store(clean, killed)


def test_store_of_another_autoencoder_is_refused(tiny_store, other_ae, corpus_file):
    rows = load_texts(str(corpus_file))
    before = (tiny_store / "zarr.json").read_bytes()
    with pytest.raises(InputError, match="holds latents of autoencoder .*--overwrite"):
        encode_dataset(rows, other_ae, tiny_store, batch_size=8, chunk_rows=16)
    assert (tiny_store / "zarr.json").read_bytes() == before
    result = encode_dataset(rows, other_ae, tiny_store, batch_size=8, chunk_rows=16, overwrite=True)
    assert result.store.latent_space == load_autoencoder(other_ae).fingerprint


def test_store_of_other_data_is_refused(tiny_store, tiny_ae, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("completely\ndifferent\n")
    with pytest.raises(InputError, match="made from other data"):
        encode_dataset(load_texts(str(other)), tiny_ae, tiny_store, batch_size=8, chunk_rows=16)


def test_changed_batch_size_on_resume_is_refused(tiny_store, tiny_ae, corpus_file):
    with pytest.raises(InputError, match="rerun with --batch-size 8"):
        encode_dataset(load_texts(str(corpus_file)), tiny_ae, tiny_store, batch_size=4,
                       chunk_rows=16)


def test_store_path_that_is_not_a_store(tmp_path, tiny_ae, corpus_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not an ldlm store"):
        encode_dataset(load_texts(str(corpus_file)), tiny_ae, folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_long_and_unicode_texts_round_trip_through_store(tmp_path, tiny_ae):
    texts = ["emoji 😀🎉 and 中文 and العربية", "x " * 500, "naïve"]
    f = tmp_path / "u.txt"
    f.write_text("\n".join(texts), encoding="utf-8")
    result = encode_dataset(load_texts(str(f)), tiny_ae, tmp_path / "u.zarr", batch_size=2)
    assert result.store.read_texts() == texts  # unchanged, whatever the script
    lengths = result.store.array("lengths")[:]
    assert lengths[1] > 500  # counted before truncation
    expected = int((lengths > load_autoencoder(tiny_ae).config.max_length).sum())
    assert result.truncated == result.store.attrs["truncated_rows"] == expected >= 1
