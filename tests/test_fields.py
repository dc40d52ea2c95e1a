"""Options declared once (ldlm.fields, ldlm.cli.fields): the command line's options are the fields
of the library's argument classes (ldlm.args), and a sampler knob added there reaches `ldlm sample`,
`ldlm interpolate --run` and the latents' header."""

import dataclasses

import pytest
from typer.testing import CliRunner

from ldlm.args import (
    AdaptArgs,
    AutoencoderOptions,
    AutoencoderTrainArgs,
    ClassifierArgs,
    DecodeArgs,
    QuickstartSettings,
    SamplingArgs,
    TrainArgs,
)
from ldlm.autoencoder import AutoencoderConfig
from ldlm.cli import app
from ldlm.cli.adapt import adapt_decoder_cmd
from ldlm.cli.autoencoder import train_autoencoder_cmd
from ldlm.cli.classifier import train_classifier_cmd
from ldlm.cli.decode import decode_cmd
from ldlm.cli.fields import option_defaults, with_fields
from ldlm.cli.interpolate import interpolate_cmd
from ldlm.cli.quickstart import quickstart_cmd
from ldlm.cli.sample import sample_cmd
from ldlm.cli.train import train_cmd
from ldlm.fields import option, options_of
from ldlm.latent_file import read_header
from ldlm.recipe import INTERPOLATION_SAMPLER, INTERPOLATION_STEPS
from tests.conftest import one_line_error
from tests.test_variations import TEXTS, tiny_run  # noqa: F401 (a fixture)

runner = CliRunner()

# command -> (argument class, the command's own defaults, the fields it does not offer)
COMMANDS = [
    (train_autoencoder_cmd, AutoencoderOptions, {}, ()),
    (train_autoencoder_cmd, AutoencoderTrainArgs, {}, ()),
    (train_cmd, TrainArgs, {}, ()),
    (adapt_decoder_cmd, AdaptArgs, {}, ()),
    (train_classifier_cmd, ClassifierArgs, {}, ()),
    (quickstart_cmd, QuickstartSettings, {}, ()),
    (sample_cmd, SamplingArgs, {}, ()),
    (decode_cmd, DecodeArgs, {}, ()),
    (interpolate_cmd, SamplingArgs, {"num_inference_steps": INTERPOLATION_STEPS,
                                     "scheduler": INTERPOLATION_SAMPLER},
     ("num_samples", "seed", "batch_size", "noise_scale")),
    (interpolate_cmd, DecodeArgs, {"temperature": 0.0},
     ("top_p", "num_beams", "best_of", "batch_size", "seed")),
]


@pytest.mark.parametrize("command,cls,own,skipped", COMMANDS)
def test_every_option_default_is_its_fields(command, cls, own, skipped):
    shown = option_defaults(command)
    for f in options_of(cls):
        if f.name in skipped:
            assert f.name not in shown or f.name == "seed"  # interpolate's own --seed sets both
            continue
        assert shown[f.name] == own.get(f.name, f.default), f.name


def test_every_argument_field_is_an_option_with_help():
    for cls in (SamplingArgs, DecodeArgs):
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == {f.name for f in options_of(cls)}
        assert all(f.metadata["help"].strip() for f in options_of(cls))
    # train's fields without a flag: the library's own knobs, and what the CLI builds itself
    library = {"denoiser", "weight_decay", "lr_scheduler", "max_grad_norm", "ema_decay",
               "checkpoints_total_limit", "eval_rows", "resume"}
    flags = {f.name for f in options_of(TrainArgs)}
    assert {f.name for f in dataclasses.fields(TrainArgs)} - flags == library


def test_the_autoencoder_config_is_built_from_the_same_fields():
    options = {f.name for f in dataclasses.fields(AutoencoderOptions)}
    assert options <= {f.name for f in dataclasses.fields(AutoencoderConfig)}
    assert all(getattr(AutoencoderConfig(), n) == getattr(AutoencoderOptions(), n) for n in options)


def test_the_shared_budget_options_read_the_fields_help():
    import inspect
    import typing

    from ldlm.budget import BudgetArgs
    from ldlm.cli.autoencoder import train_autoencoder_cmd

    helps = {f.name: f.metadata["help"] for f in options_of(BudgetArgs)}
    hints = typing.get_type_hints(train_autoencoder_cmd, include_extras=True)
    for name in ("max_minutes", "budget_clock"):
        assert hints[name].__metadata__[0].help == helps[name]
    shown = inspect.signature(train_autoencoder_cmd).parameters["budget_clock"].default
    assert shown == BudgetArgs.budget_clock


def test_a_clash_between_a_command_and_its_class_is_refused():
    def cmd(seed: int = 1, args: DecodeArgs = None):
        return args

    with pytest.raises(TypeError, match="seed"):
        with_fields(DecodeArgs, "args")(cmd)


def test_the_command_gets_one_instance_with_its_values():
    @dataclasses.dataclass
    class Knobs:
        width: int = option(3, "How wide.")
        name: str = option("a", "Which.")

    @with_fields(Knobs, "knobs", defaults={"name": "b"})
    def cmd(x: int = 0, knobs: Knobs = None):
        return x, knobs

    assert cmd(x=1, width=7, name="c") == (1, Knobs(7, "c"))
    assert option_defaults(cmd) == {"x": 0, "width": 3, "name": "b"}


def header(path) -> dict:
    with open(path, "rb") as fh:
        return read_header(fh, str(path)).extra


@pytest.fixture
def recorded(monkeypatch):
    """The options each diffusers sampler was built with."""
    import ldlm.sample

    calls = []
    make = ldlm.sample.make_sampler
    monkeypatch.setattr(ldlm.sample, "make_sampler",
                        lambda name, config, **kw: calls.append((name, kw)) or make(name, config, **kw))
    return calls


def test_a_sampler_knob_reaches_sample_and_interpolate(tiny_run, tmp_path, recorded):  # noqa: F811
    out = tmp_path / "s.ldlm"
    r = runner.invoke(app, ["sample", str(tiny_run), "--num-samples", "2", "--num-inference-steps", "3",
                            "--solver-order", "1", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert recorded[-1] == ("dpm-solver", {"solver_order": 1})
    assert header(out)["solver_order"] == 1
    out = tmp_path / "i.ldlm"
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--run", str(tiny_run), "--steps", "3",
                            "--solver-order", "3", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert recorded[-1] == ("dpm-solver", {"solver_order": 3})
    extra = header(out)
    assert extra["solver_order"] == 3 and extra["interpolate"] == TEXTS[:2]
    assert extra["num_inference_steps"] == INTERPOLATION_STEPS


def test_an_unchanged_knob_leaves_the_header_as_it_was(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "s.ldlm"
    r = runner.invoke(app, ["sample", str(tiny_run), "--num-samples", "2", "--num-inference-steps", "3",
                            "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert not {"solver_order", "project", "eta", "noise_scale"} & set(header(out))


def test_sampler_options_without_a_run_or_for_another_sampler_are_refused(tiny_run, tiny_ae):  # noqa: F811
    r = runner.invoke(app, ["sample", str(tiny_run), "--scheduler", "ddim", "--solver-order", "3"])
    assert "--solver-order 3 applies to --scheduler dpm-solver or unipc" in one_line_error(r, 2)
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--autoencoder", str(tiny_ae),
                            "--solver-order", "1"])
    assert "--solver-order applies to re-noising with a run" in one_line_error(r, 2)
    r = runner.invoke(app, ["interpolate", TEXTS[0], TEXTS[1], "--autoencoder", str(tiny_ae), "--project"])
    assert "--project applies to re-noising with a run" in one_line_error(r, 2)


def test_the_dataset_options_share_load_texts_defaults():
    import inspect

    from ldlm.cli.encode import encode_cmd
    from ldlm.cli.evaluate import evaluate_cmd
    from ldlm.data import load_texts
    from ldlm.evaluate.inputs import Sources

    library = inspect.signature(load_texts).parameters
    for command in (train_autoencoder_cmd, encode_cmd):
        shown = option_defaults(command)
        expected = (library["text_column"].default, library["split"].default)
        assert (shown["text_column"], shown["split"]) == expected
    shown = option_defaults(evaluate_cmd)
    assert (shown["column"], shown["split"]) == (Sources.column, Sources.split) == (
        library["text_column"].default, library["split"].default)
