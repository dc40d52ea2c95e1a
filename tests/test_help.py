"""`ldlm --help`: the commands in the pipeline's order, grouped, one line each."""

from __future__ import annotations

from typer.testing import CliRunner

from ldlm.cli import COMMANDS, app

runner = CliRunner()


def test_help_lists_the_commands_in_the_pipelines_order_under_their_panels():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    shown = r.output
    # every command once, in the table's order (the five stages 1-5 among them)
    names = [line.strip("│ ").split()[0] for line in shown.splitlines()
             if line.startswith("│ ") and not line.startswith("│  ")]
    assert [n for n in names if not n.startswith("-")] == [name for name, _, _ in COMMANDS]
    stages = ["train-autoencoder", "encode", "train", "sample", "decode"]
    assert [name for name, panel, _ in COMMANDS if panel.startswith("The pipeline")] == stages
    for panel in dict.fromkeys(p for _, p, _ in COMMANDS):  # each panel's title, in order
        assert f"─ {panel} ─" in shown
    for name, _, summary in COMMANDS:  # the summary on one line beside the name
        assert any(name in line and summary in line for line in shown.splitlines()), (name, summary)
    assert "seed design" not in shown


def test_no_help_text_names_the_seed_design():
    for name, _, _ in COMMANDS:
        r = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (name, r.output)
        assert "seed design" not in r.output, name


def test_sample_help_groups_its_options():
    from ldlm.args import SAMPLER_PANEL
    from ldlm.cli.sample import CONDITIONS_PANEL, RERANKING_PANEL, VARIATIONS_PANEL

    shown = runner.invoke(app, ["sample", "--help"], env={"COLUMNS": "120"}).output
    at = [shown.index(f"─ {p} ─") for p in ("Options", SAMPLER_PANEL, VARIATIONS_PANEL, CONDITIONS_PANEL,
                                             RERANKING_PANEL)]
    assert at == sorted(at)
    # each option under its panel: the sampler's knobs after the Sampler title, --mbr's after its own
    assert at[1] < shown.index("--scheduler") < at[2] and at[4] < shown.index("--reranker-weight")
    assert at[0] < shown.index("--num-samples") < at[1]
