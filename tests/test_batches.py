"""Streaming a store larger than memory: the chunk-window order, the bounded reader, and a
tiny streamed training run that resumes exactly."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ldlm.batches import WINDOWS_RESIDENT, ChunkStream, ChunkWindowOrder, window_chunks
from ldlm.conditions import ConditionSpec
from ldlm.errors import InputError
from ldlm.progress import Reporter
from ldlm.store import LatentStore, holdout_rows
from ldlm.train import TrainArgs, train_diffusion
from tests.test_train_sample import StopAt, args, make_store


def epoch_batches(order: ChunkWindowOrder, epoch: int, rank: int) -> list[np.ndarray]:
    return [order.batch(m, rank) for m in range(epoch * order.per_epoch, (epoch + 1) * order.per_epoch)]


def stream(order: ChunkWindowOrder, epoch: int, rank: int) -> np.ndarray:
    """The rank's whole stream in an epoch (every row of its chunks, window-shuffled)."""
    lay = order.layout(epoch, rank)
    return np.concatenate([order.window_rows(epoch, rank, w)[order.shuffle(epoch, rank, w)]
                           for w in range(len(lay.windows))])


# (rows, chunk_rows, batch, processes, window): full and short last chunks, one and several
# processes, windows smaller and larger than a batch, chunks not divisible among ranks
CASES = [(57, 16, 8, 1, 2), (57, 16, 8, 2, 1), (200, 16, 5, 3, 2), (130, 10, 7, 4, 3),
         (64, 16, 40, 1, 1), (1000, 32, 16, 2, 4)]


@pytest.mark.parametrize("rows,chunk,batch,procs,window", CASES)
def test_each_epoch_serves_each_row_at_most_once(rows, chunk, batch, procs, window):
    order = ChunkWindowOrder(rows, chunk, batch, procs, seed=3, window=window)
    firsts = []
    for epoch in range(3):
        served = []
        for r in range(procs):
            got = np.concatenate(epoch_batches(order, epoch, r))
            assert len(got) == order.per_epoch * batch  # equal micro-batches on every rank
            # exactly the first per_epoch * B rows of the rank's stream, from its own chunks
            np.testing.assert_array_equal(got, stream(order, epoch, r)[: len(got)])
            assert set(got // chunk) <= set(order.chunks(epoch, r).tolist())
            dropped = len(stream(order, epoch, r)) - len(got)
            assert 0 <= dropped < 2 * chunk + batch
            served.append(got)
        everything = np.concatenate(served)
        assert len(set(everything.tolist())) == len(everything)  # no row twice, ranks disjoint
        assert everything.min() >= 0 and everything.max() < rows  # never a held-out row
        if procs == 1:  # one process: only the last rows % B rows of the stream are skipped
            assert len(everything) == rows - rows % batch and order.per_epoch == rows // batch
        firsts.append(served[0][:batch])
    assert not all(np.array_equal(firsts[0], f) for f in firsts[1:])  # each epoch a new order


def test_ranks_with_too_few_rows_wrap_and_stay_in_step():
    # 2 chunks (16 rows and a short one of 4) over 2 ranks, batch 8: the short rank repeats rows
    order = ChunkWindowOrder(20, 16, 8, 2, seed=0, window=1)
    assert order.per_epoch == 1
    for epoch in range(4):
        a, b = order.batch(epoch, 0), order.batch(epoch, 1)
        assert len(a) == len(b) == 8
        assert not set(a.tolist()) & set(b.tolist()) and max(a.max(), b.max()) < 20
    # fewer chunks than processes: every rank still gets a full batch
    small = ChunkWindowOrder(10, 16, 4, 3, seed=0, window=1)
    assert all(len(small.batch(m, r)) == 4 and small.batch(m, r).max() < 10
               for m in range(3) for r in range(3))


def test_order_is_a_function_of_the_micro_index():
    """A resumed run knows only the micro-batch index: a fresh order gives the same batches."""
    kw = dict(rows=300, chunk_rows=16, batch_size=12, processes=2, seed=9, window=3)
    used = ChunkWindowOrder(**kw)
    straight = [[used.batch(m, r) for r in range(2)] for m in range(3 * used.per_epoch)]
    for start in (0, 5, used.per_epoch - 1, used.per_epoch, 2 * used.per_epoch + 3):
        fresh = ChunkWindowOrder(**kw)
        for m in range(start, min(start + 4, len(straight))):
            for r in range(2):
                np.testing.assert_array_equal(fresh.batch(m, r), straight[m][r])
    other = ChunkWindowOrder(**{**kw, "seed": 10})
    assert not np.array_equal(other.batch(0, 0), straight[0][0])
    # a resume on another number of processes continues with that count's own order
    single = ChunkWindowOrder(**{**kw, "processes": 1})
    assert len(single.batch(7, 0)) == 12 and single.per_epoch == 300 // 12


def test_window_size_bounds():
    assert ChunkWindowOrder(100, 4, 10, 1, 0, window=1).window == 3  # a window holds a batch
    # 3 windows within the memory limit, never below one batch
    assert window_chunks(16, 2**20, 8, 16, memory_limit_mb=30) == 10
    assert window_chunks(16, 2**20, 8, 16, memory_limit_mb=1000) == 16
    assert window_chunks(16, 2**20, 40, 16, memory_limit_mb=0) == 3


def id_store(path, rows=203, chunk_rows=8, conditions=False):
    """A store whose row i holds the value i everywhere (so served rows name themselves), with
    label condition i % 5 when `conditions`."""
    attrs = {"latent_space": "ids", "autoencoder": "/no/ae"}
    if conditions:
        attrs["condition"] = ConditionSpec("label", "c", labels=list("abcde")).to_dict()
    store = LatentStore.create(str(path), rows=rows, latent_shape=(2, 3), chunk_rows=chunk_rows,
                               attributes=attrs)
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        ids = np.arange(a, b)
        store.write_chunk(c, np.broadcast_to(ids[:, None, None], (b - a, 2, 3)).astype("f4"),
                          ["t"] * (b - a), np.zeros(b - a),
                          *((ids % 5, ["x"] * (b - a)) if conditions else ()))
    store.finalize()
    return LatentStore.open(path)


def test_reader_serves_the_order_with_a_bounded_number_of_chunks(tmp_path):
    store = id_store(tmp_path / "ids.zarr", conditions=True)
    n = store.rows - holdout_rows(store.rows, 1000)  # 203 rows, 10 held out
    order = ChunkWindowOrder(n, store.chunk_rows, 6, 2, seed=1, window=2)
    readers = [ChunkStream(store, order, r, conditional=True) for r in range(2)]
    total = 3 * order.per_epoch
    for m in range(total):
        for r, reader in enumerate(readers):
            x, cond, _ = reader.batch(order, m, r)
            ids = order.batch(m, r)
            assert x.dtype == np.float32 and x.shape == (6, 2, 3)
            np.testing.assert_array_equal(x[:, 0, 0], ids)  # the rows the order names
            np.testing.assert_array_equal(cond, ids % 5)  # their own conditions
            assert ids.max() < n  # held-out rows never served
            assert reader.resident_chunks <= WINDOWS_RESIDENT * order.window
    for reader in readers:
        assert order.window < reader.max_resident_chunks <= WINDOWS_RESIDENT * order.window  # prefetched
    # a reader started at any micro index (a resume) serves the same rows
    late = ChunkStream(store, order, 1, conditional=True)
    for m in (order.per_epoch + 2, 7, total - 1):
        np.testing.assert_array_equal(late.batch(order, m, 1)[0][:, 0, 0], order.batch(m, 1))
    with pytest.raises(ValueError):
        late.batch(order, 0, 0)
    for reader in (*readers, late):
        reader.close()


class Logs(Reporter):
    def __init__(self):
        self.lines = []

    def log(self, message):
        self.lines.append(message)


def test_streamed_training_resumes_exactly(tmp_path):
    store = make_store(tmp_path / "fake.zarr", rows=100)  # 95 training rows in 7 chunks of 16
    kw = dict(memory_limit_mb=0, shuffle_window_chunks=2, max_steps=10, gradient_accumulation_steps=2,
              checkpointing_steps=4, learning_rate=1e-3, objective="v")
    logs = Logs()
    result = train_diffusion(store, tmp_path / "a", args(**kw), reporter=logs)
    assert result.steps == 10 and np.isfinite(result.loss)
    assert any(line.startswith("streaming 95 training rows") for line in logs.lines)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(store, tmp_path / "b", args(**kw), reporter=StopAt(6))
    train_diffusion(store, tmp_path / "b", args(**kw, resume="latest"))
    for name in ("checkpoint-10/model.safetensors", "denoiser/diffusion_pytorch_model.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    # the in-memory path is unchanged and trains on other batches than the streamed one
    c = train_diffusion(store, tmp_path / "c", args(**{**kw, "memory_limit_mb": 2048}))
    assert c.steps == 10 and c.loss != result.loss


def test_bad_streaming_options(tmp_path):
    store = make_store(tmp_path / "fake.zarr")
    for kw, message in [({"shuffle_window_chunks": 0}, "--shuffle-window-chunks 0"),
                        ({"memory_limit_mb": -1}, "--memory-limit-mb -1")]:
        with pytest.raises(InputError, match=message):
            train_diffusion(store, tmp_path / "r", TrainArgs(**kw))
    assert not (tmp_path / "r").exists()


def test_cli_streams_under_the_memory_limit(tmp_path):
    from typer.testing import CliRunner

    from ldlm.cli import app
    from tests.test_train_sample import CLI_TINY

    store = make_store(tmp_path / "fake.zarr")
    r = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), "--max-steps", "2",
                                 "--memory-limit-mb", "0", "--shuffle-window-chunks", "2", *CLI_TINY])
    assert r.exit_code == 0, r.stderr
    assert "streaming 57 training rows" in r.stderr and r.stdout.startswith("saved ")


@pytest.mark.slow
def test_streamed_training_on_two_processes_then_one(tmp_path):
    """Equal batch counts per rank keep DDP in step; a resume on one process continues."""
    from tests.test_distributed import launch, ldlm
    from tests.test_train_sample import CLI_TINY

    store = make_store(tmp_path / "fake.zarr", rows=200)  # 190 training rows, 12 chunks
    common = [str(store), "--out", str(tmp_path / "run"), "--memory-limit-mb", "0",
              "--shuffle-window-chunks", "2", "--checkpointing-steps", "10", *CLI_TINY]
    result = launch(["train", *common, "--max-steps", "24"], timeout=240)
    assert result.stderr.count("streaming 190 training rows") == 1  # the main process speaks
    assert (tmp_path / "run" / "checkpoint-24").is_dir()
    ldlm(["train", *common, "--max-steps", "30", "--resume"])
    assert json.loads((tmp_path / "run" / "ldlm_run.json").read_text())["steps"] == 30
