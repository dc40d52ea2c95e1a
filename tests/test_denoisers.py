"""The denoisers: shapes, options, save/load round trips, the factory's errors."""

import pytest
import torch

from ldlm.denoisers import ARCHS, build_denoiser, denoiser_config, load_denoiser
from ldlm.denoisers.embeddings import sinusoidal_embedding
from ldlm.denoisers.unet2d import grid_shape
from ldlm.errors import InputError

TINY = {
    "mlp": {"widths": [16, 8], "time_dim": 8},
    "unet2d": {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4},
    "transformer": {"width": 16, "layers": 1, "heads": 2, "time_dim": 8},
}


def tiny(arch, shape=(4, 16), self_condition=False, **extra):
    torch.manual_seed(0)
    return build_denoiser(arch, denoiser_config(arch, shape, "tiny", self_condition,
                                                **{**TINY[arch], **extra}))


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("self_condition", [False, True])
def test_shapes(arch, self_condition):
    model = tiny(arch, self_condition=self_condition)
    x = torch.randn(3, 4, 16)
    t = torch.tensor([0, 500, 999])
    sc = torch.randn(3, 4, 16) if self_condition else None
    assert model(x, t, self_cond=sc).shape == (3, 4, 16)
    assert model(x, 7).shape == (3, 4, 16)  # a scalar timestep broadcasts
    if self_condition:  # self_cond changes the output once the output layer is non-zero
        for p in model.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(model(x, t, self_cond=sc), model(x, t))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_load_round_trip(arch, tmp_path):
    model = tiny(arch, self_condition=True)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / arch)
    again = load_denoiser(arch, tmp_path / arch)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert type(again) is type(model) and public(again.config) == public(model.config)
    x, t = torch.randn(2, 4, 16), torch.tensor([3, 900])
    torch.testing.assert_close(again(x, t, self_cond=x), model.eval()(x, t, self_cond=x))


@pytest.mark.parametrize("shape", [(1, 13), (2, 7), (3, 18), (1, 1)])
def test_unet2d_pads_and_crops_any_shape(shape):
    model = tiny("unet2d", shape)
    assert model(torch.randn(2, *shape), torch.tensor([1, 2])).shape == (2, *shape)


def test_grid_shape():
    assert grid_shape(16, 2) == (4, 4)
    assert grid_shape(768, 4) == (24, 32)
    h, w = grid_shape(17, 2)
    assert h * w >= 17 and h % 2 == 0 and w % 2 == 0


def test_transformer_adaln_and_width_check():
    model = tiny("transformer", adaln=True, self_condition=True)
    assert model(torch.randn(2, 4, 16), torch.tensor([1, 2])).shape == (2, 4, 16)
    with pytest.raises(InputError, match="not divisible by 3 heads"):
        tiny("transformer", heads=3)


def test_mlp_film_scales_by_the_embedding_and_is_the_cli_adaln():
    from ldlm.cli.train import _denoiser_overrides

    model = tiny("mlp", film=True)
    block = model.down[0]
    assert block.time.out_features == 2 * block.norm.normalized_shape[0]  # scale and shift
    x = torch.randn(3, 4, 16)
    torch.nn.init.normal_(model.out.weight)  # the output layer starts at zero
    a, b = model(x, torch.tensor([1, 1, 1])), model(x, torch.tensor([900, 900, 900]))
    assert a.shape == (3, 4, 16) and not torch.allclose(a, b)  # the timestep reaches the output
    assert _denoiser_overrides("mlp", True, None) == {"film": True}
    assert _denoiser_overrides("transformer", True, None) == {"adaln": True}


def test_factory_errors():
    with pytest.raises(InputError, match="Unknown denoiser type 'dit'"):
        denoiser_config("dit", (4, 16))
    with pytest.raises(InputError, match="no option"):
        denoiser_config("mlp", (4, 16), "tiny", bogus=1)
    with pytest.raises(InputError, match="--size 'huge'"):
        denoiser_config("mlp", (4, 16), "huge")


def test_sinusoidal_embedding():
    t = torch.tensor([0, 10, 999])
    assert sinusoidal_embedding(t, 8).shape == (3, 8)
    assert sinusoidal_embedding(t, 7).shape == (3, 7)
    e = sinusoidal_embedding(t, 8)
    assert not torch.allclose(e[0], e[1])
