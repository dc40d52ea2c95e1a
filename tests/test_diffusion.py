"""Objectives, self-conditioning, schedules and samplers, standardisation, the Frechet distance."""

import numpy as np
import pytest
import torch

from ldlm.diffusion import Diffusion, Standardiser
from ldlm.errors import InputError
from ldlm.metrics import frechet_distance
from ldlm.schedulers import SAMPLERS, make_noise_scheduler, make_sampler


def test_schedules():
    s = make_noise_scheduler("linear", "eps")
    assert s.config.num_train_timesteps == 1000 and s.config.beta_schedule == "linear"
    assert float(s.betas[0]) == pytest.approx(0.00085) and float(s.betas[-1]) == pytest.approx(0.012)
    s = make_noise_scheduler("scaled-linear", "x0")
    assert s.config.beta_schedule == "scaled_linear" and s.config.prediction_type == "sample"
    assert float(s.betas[-1]) == pytest.approx(0.012, rel=1e-4)
    s = make_noise_scheduler("cosine", "v")
    assert s.config.beta_schedule == "squaredcos_cap_v2" and s.config.prediction_type == "v_prediction"
    with pytest.raises(InputError, match="--schedule 'sigmoid'"):
        make_noise_scheduler("sigmoid")
    with pytest.raises(InputError, match="--objective 'score'"):
        make_noise_scheduler("linear", "score")


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_samplers_share_the_schedule(objective):
    s = make_noise_scheduler("linear", objective)
    import diffusers

    assert {"ddpm", "ddim", "dpm-solver", "unipc"} <= set(SAMPLERS)
    for name, (cls_name, _, _) in SAMPLERS.items():  # every sampler of the table
        cls = getattr(diffusers, cls_name)
        sampler = make_sampler(name, s.config)
        assert isinstance(sampler, cls)
        assert sampler.config.prediction_type == s.config.prediction_type
        torch.testing.assert_close(sampler.betas, s.betas)
    with pytest.raises(InputError, match="--scheduler 'euler'"):
        make_sampler("euler", s.config)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_predict_x0_inverts_the_target(objective):
    s = make_noise_scheduler("cosine", objective)
    diff = Diffusion(s, objective)
    x0, noise = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    t = torch.tensor([0, 10, 300, 700, 999])
    x_t = s.add_noise(x0, noise, t)
    torch.testing.assert_close(diff.predict_x0(diff.target(x0, noise, t), x_t, t), x0,
                               atol=2e-3, rtol=1e-3)


class Recorder(torch.nn.Module):
    """A linear 'denoiser' that records whether it got a self-conditioning input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.calls: list[bool] = []

    def forward(self, x, t, self_cond=None):
        self.calls.append(self_cond is not None)
        return self.w * x + (0 if self_cond is None else 0.1 * self_cond)


def test_self_conditioning_in_training():
    diff = Diffusion(make_noise_scheduler(), "x0", self_condition=True)
    model, gen = Recorder(), torch.Generator().manual_seed(0)
    for _ in range(40):
        loss = diff.loss(model, torch.randn(4, 2, 3), gen)
        loss.backward()
    with_sc = sum(model.calls) / (len(model.calls) - sum(model.calls))  # sc calls per batch
    assert 0.2 < with_sc < 0.8  # about half the batches self-condition (two forwards each)
    assert model.w.grad is not None and torch.isfinite(loss)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver"])
def test_sampling_is_deterministic(sampler):
    s = make_noise_scheduler("linear", "eps")
    diff = Diffusion(s, "eps", self_condition=True)
    model = Recorder()

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return diff.sample(model, make_sampler(sampler, s.config), (3, 2, 3), gen, 4)

    a, b, c = run(1), run(1), run(2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c) and torch.isfinite(a).all()
    assert any(model.calls)  # self-conditioning used while sampling


def test_standardiser_round_trip():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(200, 4, 5)).astype("f4")
    std = x.std(0)
    std[0, 0] = 0.0  # a constant position must not blow up
    st = Standardiser(x.mean(0), std)
    z = st.forward(torch.from_numpy(x))
    assert torch.isfinite(z).all()
    assert abs(float(z[:, 1:].mean())) < 1e-4 and float(z[:, 1:].std()) == pytest.approx(1.0, abs=0.02)
    torch.testing.assert_close(st.inverse(z), torch.from_numpy(x), atol=1e-4, rtol=1e-5)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 6))
    b = rng.normal(size=(4000, 6)) * 2 + 1
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # |mu|^2 = 6, tr Ca = 6, tr Cb = 24, 2 tr sqrt(Ca Cb) = 24 -> 12
    assert frechet_distance(a, b) == pytest.approx(12.0, rel=0.05)
    assert frechet_distance(a.reshape(-1, 2, 3), b.reshape(-1, 2, 3)) == frechet_distance(a, b)
    try:
        from scipy import linalg
    except ImportError:
        return
    c = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    ca, cc = np.cov(a[:50], rowvar=False), np.cov(c, rowvar=False)
    ref = ((a[:50].mean(0) - c.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cc) - 2 * np.trace(
        linalg.sqrtm(ca @ cc).real)
    assert frechet_distance(a[:50], c) == pytest.approx(ref, rel=1e-5)
