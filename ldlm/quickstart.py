"""The built-in default run: every stage on the corpus shipped with ldlm, in one folder.

    OUT/autoencoder/      train-autoencoder on the built-in E2E references
    OUT/latents.zarr      encode of the same texts
    OUT/run/              train: the denoiser on those latents
    OUT/samples.ldlm      sample: new latents from noise (DPM-Solver, 20 steps)
    OUT/samples.txt       decode: one generated text per line
    OUT/evaluation.json   evaluate: the texts against held-out references, beside human texts

A stage whose artefact is already there and complete is not run again, so a rerun after an
interruption continues, and the user can go on from any artefact with the normal commands
(`ldlm sample OUT/run | ldlm decode`, `ldlm evaluate OUT/samples.txt ...`, `ldlm info`).

The run has a time budget (`max_minutes`, on this process's CPU clock by default: 900
CPU-seconds), shared by the two trainers (`stage_budgets`): each plans its steps to end within
its share, up to its step cap, so a slow machine trains fewer steps instead of running longer;
the result says how many steps each reached. The trainers' clocks travel in their
checkpoints, so an interrupted run keeps its budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ldlm.args import QuickstartSettings
from ldlm.atomic import atomic_file, check_output_path
from ldlm.autoencoder import AutoencoderConfig, is_autoencoder_dir, load_autoencoder
from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
from ldlm.corpus import E2E_HELDOUT, E2E_REFS
from ldlm.data import load_texts
from ldlm.encode import encode_dataset
from ldlm.evaluate import Evaluation, evaluate_texts
from ldlm.latent_file import write_latent_file
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import (
    QUICKSTART_AE_LR,
    QUICKSTART_AE_SHARE,
    QUICKSTART_DIFFUSION_SHARE,
    SAMPLER,
    SAMPLER_STEPS,
)


def stage_budgets(s: QuickstartSettings) -> dict[str, float]:
    """Minutes of the run's budget for each trainer; the rest pays for encoding, sampling,
    decoding, scoring and start-up."""
    return {"autoencoder": QUICKSTART_AE_SHARE * s.max_minutes,
            "diffusion": QUICKSTART_DIFFUSION_SHARE * s.max_minutes}


@dataclass
class QuickstartResult:
    out: Path
    latent_space: str
    latent_shape: tuple[int, int]
    rows: int
    reconstruction: dict | None  # the autoencoder's held-out reconstruction scores
    autoencoder_steps: int | None  # the steps the autoencoder reached (its cap, or where the budget ended)
    diffusion_steps: int | None  # the steps the denoiser reached
    budgets: dict[str, float]  # minutes of the budget's clock given to each trainer (`stage_budgets`)
    samples: list[str]  # generated texts
    evaluation: Evaluation  # the samples against held-out references, human texts beside
    paths: dict[str, Path] = field(default_factory=dict)


def _autoencoder(rows, out: Path, s: QuickstartSettings, reporter: Reporter):
    if is_autoencoder_dir(out):
        reporter.log(f"reusing {out}")
        return load_autoencoder(out)
    resume = "latest" if any(out.glob("checkpoint-*")) else None  # an interrupted run
    model, _ = train_autoencoder(
        rows, out,
        AutoencoderConfig(size=s.size, latent_noise=s.latent_noise, latent_injection=s.latent_injection),
        AutoencoderTrainArgs(max_steps=s.autoencoder_steps, batch_size=64, learning_rate=QUICKSTART_AE_LR,
                             max_minutes=stage_budgets(s)["autoencoder"], budget_clock=s.budget_clock,
                             eval_rows=200, seed=s.seed, checkpointing_steps=250,
                             checkpoints_total_limit=1, resume=resume),
        reporter=reporter,
    )
    return model


def _diffusion(store: Path, out: Path, s: QuickstartSettings, reporter: Reporter) -> int | None:
    """Train the denoiser (or reuse it); the steps it reached."""
    from ldlm.run import RUN_FILE
    from ldlm.train import TrainArgs, train_diffusion

    if (out / RUN_FILE).exists():
        reporter.log(f"reusing {out}")
        return json.loads((out / RUN_FILE).read_text()).get("steps")
    never = 10**9  # no periodic samples or epoch checkpoints: step checkpoints for resume
    resume = "latest" if any(out.glob("checkpoint-*")) else None
    return train_diffusion(store, out, TrainArgs(
        max_steps=s.diffusion_steps, max_minutes=stage_budgets(s)["diffusion"], budget_clock=s.budget_clock,
        batch_size=256, learning_rate=1e-3, lr_warmup_steps=200,
        save_samples_epochs=never, save_model_epochs=never, checkpointing_steps=500,
        checkpoints_total_limit=1, eval_rows=0, seed=s.seed, resume=resume,
    ), reporter).steps


def _sample(run: Path, out: Path, s: QuickstartSettings, reporter: Reporter) -> None:
    from ldlm.sample import SamplingArgs, sample_latents

    if out.exists():
        return
    latents, header = sample_latents(run, SamplingArgs(num_samples=s.num_samples,
                                                       num_inference_steps=SAMPLER_STEPS,
                                                       scheduler=SAMPLER, seed=s.seed),
                                     device="cpu", reporter=reporter)
    write_latent_file(out, header, latents)


def _decode(model, latents: Path, out: Path, reporter: Reporter) -> list[str]:
    from ldlm.decode import DecodeArgs, decode_latents, open_latents

    if out.exists():
        return out.read_text(encoding="utf-8").splitlines()
    records = decode_latents(open_latents(str(latents)), model,
                             DecodeArgs(temperature=0.0), reporter=reporter)
    texts = [r["text"].replace("\n", " ") for r in records]
    with atomic_file(out, "w") as fh:
        fh.write("".join(t + "\n" for t in texts))
    return texts


def _evaluate(texts: list[str], train: list[str], out: Path, s: QuickstartSettings,
              reporter: Reporter) -> Evaluation:
    if out.exists():
        return Evaluation.from_dict(json.loads(out.read_text()))
    references = load_texts(str(E2E_HELDOUT)).texts
    result = evaluate_texts(texts, references=references, train_texts=train,
                            num_samples=min(len(texts), len(references) // 2), seeds=1,
                            reporter=reporter)
    with atomic_file(out, "w") as fh:
        json.dump(result.as_dict(), fh, indent=2)
    return result


def run_quickstart(out: str | Path = "ldlm-quickstart", settings: QuickstartSettings | None = None,
                   *, reporter: Reporter = SILENT) -> QuickstartResult:
    """Train an autoencoder and a denoiser on the built-in corpus, generate, decode, evaluate."""
    s = settings or QuickstartSettings()
    s.check()
    out = Path(out)
    check_output_path(out, "--out", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"autoencoder": out / "autoencoder", "store": out / "latents.zarr", "run": out / "run",
             "latents": out / "samples.ldlm", "texts": out / "samples.txt",
             "evaluation": out / "evaluation.json"}
    rows = load_texts(str(E2E_REFS))
    model = _autoencoder(rows, paths["autoencoder"], s, reporter)
    result = encode_dataset(rows, paths["autoencoder"], paths["store"], reporter=reporter, model=model)
    diffusion_steps = _diffusion(paths["store"], paths["run"], s, reporter)
    _sample(paths["run"], paths["latents"], s, reporter)
    texts = _decode(model, paths["latents"], paths["texts"], reporter)
    evaluation = _evaluate(texts, rows.texts, paths["evaluation"], s, reporter)
    return QuickstartResult(
        out=out, latent_space=model.fingerprint, latent_shape=model.latent_shape, rows=result.rows,
        reconstruction=model.config.extra.get("reconstruction"),
        autoencoder_steps=(model.config.extra.get("training") or {}).get("steps"),
        diffusion_steps=diffusion_steps, budgets=stage_budgets(s), samples=texts,
        evaluation=evaluation, paths=paths,
    )
