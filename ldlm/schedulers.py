"""diffusers schedulers by name: the training noise schedule and the samplers built from it.

Every choice the command line offers for `--objective`, `--schedule` and `--scheduler` is a
key of a table here, so adding one is one entry. The module imports no torch or diffusers at
load time (the command line reads the tables to build its choices); the schedulers are
created on demand.

Objectives (what the network predicts) map onto diffusers' prediction types, so a model
output goes to a sampler's `step` as it is:
    eps -> "epsilon" (DDPM, Ho et al. 2020), x0 -> "sample" (design B),
    v -> "v_prediction" (Salimans & Ho 2022, as in LD4LG).
"""

from __future__ import annotations

from ldlm.errors import InputError

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
BETA_SCHEDULES = {"linear": "linear", "scaled-linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
BETA_START, BETA_END = 0.00085, 0.012  # design B's linear schedule ends
TRAIN_TIMESTEPS = 1000

# sampler name -> (diffusers class, options given to from_config, options its `step` takes)
SAMPLERS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    # ancestral sampling (Ho et al. 2020)
    "ddpm": ("DDPMScheduler", {}, ()),
    # deterministic at eta 0 (Song et al. 2021); eta 1 adds DDPM-like noise
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False,
                               "timestep_spacing": "trailing"}, ("eta",)),
    # DPM-Solver++ multistep (Lu et al. 2022)
    "dpm-solver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++",
                                                   "timestep_spacing": "trailing"}, ()),
    # UniPC multistep predictor-corrector (Zhao et al. 2023)
    "unipc": ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}, ()),
}


def check_choice(flag: str, value: str, allowed) -> None:
    """InputError unless `value` is one of `allowed` (a table or a sequence of names)."""
    if value not in allowed:
        raise InputError(f"{flag} {value!r} is not one of {', '.join(allowed)}")


def make_noise_scheduler(schedule: str = "linear", objective: str = "eps",
                         num_train_timesteps: int = TRAIN_TIMESTEPS):
    """The training scheduler (DDPM) whose config every sampler is built from."""
    from diffusers import DDPMScheduler

    check_choice("--schedule", schedule, BETA_SCHEDULES)
    check_choice("--objective", objective, PREDICTION_TYPES)
    # clipping x0 to [-1, 1] suits images, not standardised latents: off
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_start=BETA_START, beta_end=BETA_END,
        beta_schedule=BETA_SCHEDULES[schedule], prediction_type=PREDICTION_TYPES[objective],
        clip_sample=False,
    )


def make_sampler(name: str, config, **overrides):
    """A diffusers sampler of the SAMPLERS table, from a training scheduler's config; `overrides`
    (e.g. solver_order) go to its constructor over the table's options."""
    import diffusers

    check_choice("--scheduler", name, SAMPLERS)
    cls, options, _ = SAMPLERS[name]
    return getattr(diffusers, cls).from_config(config, **{**options, **overrides})


def step_options(name: str, **knobs) -> dict:
    """The keyword arguments of sampler `name`'s `step` among `knobs` (e.g. eta for ddim)."""
    check_choice("--scheduler", name, SAMPLERS)
    return {key: knobs[key] for key in SAMPLERS[name][2] if key in knobs}


__all__ = ["PREDICTION_TYPES", "BETA_SCHEDULES", "SAMPLERS", "TRAIN_TIMESTEPS", "check_choice",
           "make_noise_scheduler", "make_sampler", "step_options"]
