import io

import numpy as np
import pytest

from ldlm.autoencoder import load_autoencoder
from ldlm.decode import DecodeArgs, decode_latents, open_latents, resolve_autoencoder
from ldlm.errors import InputError
from ldlm.latent_file import LatentHeader, LatentWriter, write_latent_file
from ldlm.store import LatentStore


def _header(model, ae_path):
    return LatentHeader(latent_space=model.fingerprint, latent_shape=model.latent_shape,
                        autoencoder=str(ae_path))


def test_store_reconstruction_in_order(tiny_store):
    source = open_latents(str(tiny_store))
    model = resolve_autoencoder(source, None)  # found from the store's attributes
    records = list(decode_latents(source, model, DecodeArgs(temperature=0, batch_size=7)))
    refs = LatentStore.open(tiny_store).read_texts()
    assert [r["index"] for r in records] == list(range(len(refs)))
    assert [r["reference"] for r in records] == refs
    exact = sum(r["text"] == r["reference"] for r in records)
    assert exact >= len(refs) // 2


def test_latent_file_and_stdin_give_the_same_texts(tmp_path, tiny_ae):
    model = load_autoencoder(tiny_ae)
    z = model.encode_texts(["the cat sat on the mat", "a dog ran in the park"]).numpy()
    path = tmp_path / "z.ldlm"
    write_latent_file(path, _header(model, tiny_ae), z)
    from_file = [r["text"] for r in decode_latents(open_latents(str(path)), model,
                                                    DecodeArgs(temperature=0))]
    raw = path.read_bytes()
    from_stdin = [r["text"] for r in decode_latents(open_latents("-", io.BytesIO(raw)), model,
                                                     DecodeArgs(temperature=0))]
    assert from_file == from_stdin == ["the cat sat on the mat", "a dog ran in the park"]


def test_sampling_is_seeded(tiny_store, tiny_ae):
    model = load_autoencoder(tiny_ae)
    a = [r["text"] for r in decode_latents(open_latents(str(tiny_store)), model,
                                           DecodeArgs(temperature=1.5, seed=1))]
    b = [r["text"] for r in decode_latents(open_latents(str(tiny_store)), model,
                                           DecodeArgs(temperature=1.5, seed=1))]
    assert a == b


def test_latents_of_another_space_are_refused(tmp_path, tiny_ae, other_ae):
    model = load_autoencoder(tiny_ae)
    path = tmp_path / "z.ldlm"
    write_latent_file(path, _header(model, tiny_ae), np.zeros((1, *model.latent_shape), "f4"))
    with pytest.raises(InputError, match="live in latent space .* pass the autoencoder"):
        resolve_autoencoder(open_latents(str(path)), str(other_ae))


def test_wrong_shape_is_refused(tmp_path, tiny_ae):
    model = load_autoencoder(tiny_ae)
    k, d = model.latent_shape
    header = LatentHeader(latent_space=model.fingerprint, latent_shape=(k, d + 1))
    path = tmp_path / "z.ldlm"
    write_latent_file(path, header, np.zeros((1, k, d + 1), "f4"))
    with pytest.raises(InputError, match="have shape .* expects"):
        resolve_autoencoder(open_latents(str(path)), str(tiny_ae))


def test_unknown_autoencoder_named_by_stream(tiny_ae):
    buf = io.BytesIO()
    model = load_autoencoder(tiny_ae)
    w = LatentWriter(buf, LatentHeader(latent_space="x", latent_shape=model.latent_shape,
                                       autoencoder="/gone/ae"))
    w.close()
    with pytest.raises(InputError, match="not on this machine; pass --autoencoder"):
        resolve_autoencoder(open_latents("-", io.BytesIO(buf.getvalue())), None)


def test_bad_decode_args():
    for args, flag in [(DecodeArgs(max_new_tokens=0), "--max-new-tokens"),
                       (DecodeArgs(temperature=-1), "--temperature"),
                       (DecodeArgs(top_p=1.5), "--top-p"),
                       (DecodeArgs(num_beams=0), "--num-beams")]:
        with pytest.raises(InputError, match=flag):
            args.check()
