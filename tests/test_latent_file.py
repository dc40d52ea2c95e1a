import io

import numpy as np
import pytest

from ldlm.errors import InputError
from ldlm.latent_file import (
    LatentHeader,
    LatentWriter,
    read_frames,
    read_header,
    write_latent_file,
)

HEADER = LatentHeader(latent_space="abc123", latent_shape=(2, 3), autoencoder="/x/ae",
                      extra={"run": "r1"})


def _stream(*frames, close=True) -> bytes:
    buf = io.BytesIO()
    w = LatentWriter(buf, HEADER)
    for x, meta in frames:
        w.write(x, meta)
    if close:
        w.close()
    return buf.getvalue()


def test_round_trip_with_metadata():
    a = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(1, 2, 3)).astype(np.float32)
    fh = io.BytesIO(_stream((a, [{"source": "x"}] * 3), (b, None)))
    header = read_header(fh, "buf")
    assert header.latent_space == "abc123" and header.latent_shape == (2, 3)
    assert header.autoencoder == "/x/ae" and header.extra == {"run": "r1"}
    frames = list(read_frames(fh, header, "buf"))
    np.testing.assert_array_equal(frames[0][0], a)
    assert frames[0][1] == [{"source": "x"}] * 3
    np.testing.assert_array_equal(frames[1][0], b)
    assert frames[1][1] is None


def test_cut_short_stream_is_detected():
    a = np.zeros((4, 2, 3), np.float32)
    raw = _stream((a, None))
    for cut in (len(raw) - 8, len(raw) - 20):
        fh = io.BytesIO(raw[:cut])
        header = read_header(fh, "stdin")
        with pytest.raises(InputError, match="cut short"):
            list(read_frames(fh, header, "stdin"))


def test_garbage_and_empty_input():
    with pytest.raises(InputError, match="not an ldlm latent stream"):
        read_header(io.BytesIO(b"hello world, this is text"), "stdin")
    with pytest.raises(InputError, match="empty"):
        read_header(io.BytesIO(b""), "stdin")


def test_nan_latents_are_refused():
    a = np.zeros((2, 2, 3), np.float32)
    a[1, 0, 0] = np.nan
    fh = io.BytesIO(_stream((a, None)))
    header = read_header(fh, "f")
    with pytest.raises(InputError, match="NaN or inf.*latent 1"):
        list(read_frames(fh, header, "f"))


def test_wrong_shape_is_refused_on_write():
    w = LatentWriter(io.BytesIO(), HEADER)
    with pytest.raises(ValueError, match="do not match"):
        w.write(np.zeros((1, 3, 3), np.float32))


def test_latent_file_is_written_whole(tmp_path):
    a = np.ones((2, 2, 3), np.float32)
    path = tmp_path / "z.ldlm"
    write_latent_file(path, HEADER, a)
    with open(path, "rb") as fh:
        header = read_header(fh, "f")
        (x, _), = list(read_frames(fh, header, "f"))
    np.testing.assert_array_equal(x, a)
    assert [p.name for p in tmp_path.iterdir()] == ["z.ldlm"]  # no temporary left behind
