import numpy as np
import pytest

from ldlm.errors import InputError
from ldlm.store import LatentStore, is_store, remove_store


def _make(path, rows=10, chunk=4):
    return LatentStore.create(path, rows=rows, latent_shape=(2, 3), chunk_rows=chunk,
                              attributes={"latent_space": "fp"})


def test_write_finalize_and_stats(tmp_path):
    path = tmp_path / "s.zarr"
    store = _make(path)
    rng = np.random.default_rng(0)
    full = rng.normal(size=(10, 2, 3)).astype(np.float32)
    texts = [f"row {i} ✓" for i in range(10)]
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, full[a:b], texts[a:b], np.arange(a, b))
    assert not LatentStore.open(path, require_complete=False).complete
    store.finalize()
    again = LatentStore.open(path)
    assert again.complete and again.rows == 10 and again.latent_shape == (2, 3)
    np.testing.assert_array_equal(again.read_latents(), full)
    assert again.read_texts() == texts
    mean, std = again.stats()
    np.testing.assert_allclose(mean, full.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, full.std(0), rtol=1e-5, atol=1e-6)
    import zarr

    g = zarr.open_group(str(path), mode="r")
    assert g["latents"].shape == (10, 2, 3) and g["latents"].chunks == (4, 2, 3)
    assert g.metadata.zarr_format == 3


def test_incomplete_store_is_refused_for_reading(tmp_path):
    path = tmp_path / "s.zarr"
    store = _make(path)
    store.write_chunk(0, np.zeros((4, 2, 3), np.float32), ["a"] * 4, np.ones(4))
    assert store.progress() == (1, 3)
    with pytest.raises(InputError, match=r"incomplete \(1 of 3 chunks"):
        LatentStore.open(path)


def test_not_a_store(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        LatentStore.open(tmp_path / "missing.zarr")
    assert not is_store(str(tmp_path))
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="not a zarr store; refusing"):
        remove_store(str(tmp_path))
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_missing_array_is_reported(tmp_path):
    import shutil

    path = tmp_path / "s.zarr"
    _make(path).finalize()
    shutil.rmtree(path / "text")
    with pytest.raises(Exception, match="lacks array"):
        LatentStore.open(path)


def test_nan_latents_stop_finalize(tmp_path):
    from ldlm.errors import RuntimeFailure

    store = _make(tmp_path / "s.zarr", rows=4, chunk=4)
    x = np.zeros((4, 2, 3), np.float32)
    x[2, 1, 1] = np.inf
    store.write_chunk(0, x, ["a"] * 4, np.ones(4))
    with pytest.raises(RuntimeFailure, match="NaN or inf"):
        store.finalize()
    assert not LatentStore.open(tmp_path / "s.zarr", require_complete=False).complete


def test_memory_url_store():
    store = LatentStore.create("memory://ldlm-test.zarr", rows=3, latent_shape=(1, 2),
                               chunk_rows=2, attributes={})
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, np.full((b - a, 1, 2), c, np.float32), ["x"] * (b - a), np.ones(b - a))
    store.finalize()
    assert LatentStore.open("memory://ldlm-test.zarr").read_latents()[:, 0, 0].tolist() == [0, 0, 1]
