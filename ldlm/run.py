"""The run artefact: what `ldlm train` writes and everything after it reads.

RUN_DIR after a run:
    denoiser/            the EMA denoiser, diffusers `save_pretrained` layout
    scheduler/           the training noise scheduler config (samplers are built from it)
    ldlm_run.json        latent space, autoencoder, store, latent shape, statistics,
                         objective, condition spec, training arguments (written last)
    checkpoint-<step>/   accelerate states (ldlm.train); the last few are kept
    samples/, metrics.jsonl   samples and figures from during training

This module loads a run (`load_run`), saves one (`save_run`, `push_to_hub`), builds the
header of the latents it samples (`header_for`), and finds the autoencoder and the store of
its latent space (`run_autoencoder`, `run_store`), so that the stages and composites that
start from a run share one definition of it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldlm.atomic import publish
from ldlm.autoencoder import LatentAutoencoder, autoencoder_location, load_autoencoder_for
from ldlm.conditions import ConditionSpec
from ldlm.diffusion import Diffusion, Standardiser
from ldlm.errors import InputError, RuntimeFailure, first_line
from ldlm.latent_file import LatentHeader

RUN_FILE = "ldlm_run.json"  # the file that marks a finished run folder and describes it
RUN_FORMAT = "ldlm-run"


@dataclass
class Run:
    """A trained run, loaded."""

    path: Path
    meta: dict  # ldlm_run.json
    model: torch.nn.Module  # the (EMA) denoiser, in eval mode
    noise: object  # the training noise scheduler
    diffusion: Diffusion
    standard: Standardiser

    @property
    def latent_shape(self) -> tuple[int, int]:
        k, d = self.meta["latent_shape"]
        return int(k), int(d)

    @property
    def train_timesteps(self) -> int:
        return int(self.noise.config.num_train_timesteps)

    @property
    def condition_spec(self) -> ConditionSpec | None:
        """The condition vocabulary of a conditional run, None for an unconditional one."""
        spec = self.meta.get("condition")
        return ConditionSpec.from_dict(spec) if spec else None


RUN_VERSIONS = (1,)  # the ldlm_run.json versions this ldlm reads
_FIX = "retrain it, or resume its training from a checkpoint with `ldlm train STORE --out RUN_DIR --resume`"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value, n: int) -> bool:
    """`value` is a list of `n` finite numbers."""
    return (isinstance(value, list) and len(value) == n and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value))


def read_run_meta(run_dir: str | Path) -> dict:
    """The checked ldlm_run.json of a finished run: the one reader `sample`, `info` and every
    composite share. Another format or a newer version is an InputError (as for stores and latent
    files), a damaged file or field a RuntimeFailure, each one line naming the file and the fix."""
    from ldlm.denoisers import ARCHS
    from ldlm.files import read_json
    from ldlm.schedulers import BETA_SCHEDULES, PREDICTION_TYPES

    owner = f"RUN_DIR {str(run_dir)!r}"
    meta = read_json(Path(run_dir) / RUN_FILE, owner, _FIX)
    if meta.get("format") != RUN_FORMAT:
        raise InputError(f"{owner} has {RUN_FILE} format {meta.get('format')!r}, not {RUN_FORMAT!r}: it "
                         "was not written by `ldlm train`; give the --out folder of `ldlm train`")
    version = meta.get("version")
    if not _is_int(version) or version not in RUN_VERSIONS:
        raise InputError(f"{owner} has {RUN_FILE} version {version!r}, but this ldlm reads version "
                         f"{', '.join(map(str, RUN_VERSIONS))}; upgrade ldlm, or retrain the run")

    def damaged(field: str, want: str) -> RuntimeFailure:
        shown = repr(meta.get(field))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return RuntimeFailure(f"{owner} has a damaged {RUN_FILE} (field {field} is {shown}, not {want}); "
                              f"{_FIX}")

    if meta.get("arch") not in ARCHS:
        raise damaged("arch", f"one of {', '.join(ARCHS)}")
    shape = meta.get("latent_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(n) and n > 0 for n in shape)):
        raise damaged("latent_shape", "two positive integers [k, d]")
    for field in ("stats_mean", "stats_std"):
        if not _numbers(meta.get(field), shape[0] * shape[1]):
            raise damaged(field, f"{shape[0] * shape[1]} finite numbers")
    if meta.get("objective") not in PREDICTION_TYPES:
        raise damaged("objective", f"one of {', '.join(PREDICTION_TYPES)}")
    if meta.get("schedule") not in (None, *BETA_SCHEDULES):
        raise damaged("schedule", f"one of {', '.join(BETA_SCHEDULES)}")
    if not isinstance(meta.get("self_condition"), bool):
        raise damaged("self_condition", "true or false")
    for field in ("latent_space", "autoencoder", "store"):
        if not isinstance(meta.get(field), str | None):
            raise damaged(field, "a string")
    for field in ("condition", "training"):
        if not isinstance(meta.get(field), dict | None):
            raise damaged(field, "a JSON object")
    if meta.get("steps") is not None and not _is_int(meta["steps"]):
        raise damaged("steps", "a step count")
    if meta.get("condition"):
        try:
            ConditionSpec.from_dict(meta["condition"])
        except (KeyError, TypeError, ValueError) as exc:
            raise damaged("condition", f"a condition spec ({first_line(exc, 60)})") from exc
    return meta


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load RUN_DIR (written by `ldlm train`); clear errors when it holds no model."""
    from diffusers import DDPMScheduler

    from ldlm.denoisers import ARCHS, load_denoiser
    from ldlm.files import missing, read_json

    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"RUN_DIR {str(run_dir)!r} {missing(path)}; give the --out folder of "
                         "`ldlm train`")
    if not os.path.lexists(path / RUN_FILE):  # a link that leads nowhere is read (and named) below
        hint = ("training has not finished: resume it with `ldlm train STORE --out RUN_DIR --resume`"
                if any(path.glob("checkpoint-*")) else "give the --out folder of `ldlm train`")
        raise InputError(f"RUN_DIR {str(run_dir)!r} holds no trained model (no {RUN_FILE}); {hint}")
    meta = read_run_meta(path)
    owner = f"RUN_DIR {str(run_dir)!r}"
    saved = read_json(path / "denoiser" / "config.json", f"the denoiser of {owner}", _FIX).get("_class_name")
    want = ARCHS[meta["arch"]][1]
    if saved != want:  # a hand-edited arch: diffusers would build one class from another's weights
        raise RuntimeFailure(f"{owner}: {RUN_FILE} says arch {meta['arch']!r} ({want}), but denoiser/"
                             f"config.json holds a {saved!r}; restore arch in {RUN_FILE}, or {_FIX}")
    try:
        model = load_denoiser(meta["arch"], path / "denoiser")
        noise = DDPMScheduler.from_pretrained(str(path / "scheduler"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        # NotImplementedError is a RuntimeError: "Cannot copy out of meta tensor" for another class's weights
        first = first_line(exc)
        raise RuntimeFailure(f"RUN_DIR {str(run_dir)!r} is damaged ({first}); retrain it or resume "
                             "training from a checkpoint") from exc
    k, d = meta["latent_shape"]
    mean = np.asarray(meta["stats_mean"], np.float32).reshape(k, d)
    std = np.asarray(meta["stats_std"], np.float32).reshape(k, d)
    model.to(device).eval()
    diffusion = Diffusion(noise, meta["objective"], bool(meta["self_condition"]))
    return Run(path, meta, model, noise, diffusion, Standardiser(mean, std))


def save_run(run: Path, model, scheduler, meta: dict) -> None:
    """Write denoiser/, scheduler/ and ldlm_run.json; ldlm_run.json goes last, so a run that
    has it has a whole model (a kill midway leaves no ldlm_run.json: `sample` refuses)."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp / "denoiser")
        scheduler.save_pretrained(tmp / "scheduler")
        (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2))

    publish(run, fill, RUN_FILE)


def _model_card(meta: dict) -> str:
    args = meta["training"]
    return (
        "---\nlibrary_name: diffusers\ntags:\n- ldlm\n- latent-diffusion\n- text-generation\n---\n\n"
        f"# ldlm latent diffusion denoiser\n\nA `{meta['arch']}` denoiser ({meta['objective']}"
        f"-prediction, {meta['schedule']} schedule) trained with "
        "[ldlm](https://github.com/) on latents of shape "
        f"{tuple(meta['latent_shape'])} from autoencoder `{meta['latent_space']}`, for "
        f"{meta['steps']} steps (batch {args['batch_size']}, lr {args['learning_rate']}, "
        f"seed {args['seed']}).\n\n```\nldlm sample RUN_DIR --num-samples 5 | ldlm decode "
        "--autoencoder AE_DIR\n```\n"
    )


def push_to_hub(run: Path, repo_id: str, meta: dict) -> str:
    """Upload RUN_DIR (without checkpoints) with a model card; RuntimeFailure on any failure."""
    try:
        from huggingface_hub import HfApi

        (run / "README.md").write_text(_model_card(meta))
        api = HfApi()
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(run), repo_id=repo_id,
                          ignore_patterns=["checkpoint-*", "checkpoint-*/**", ".*", "logs/**"])
        return str(url)
    except Exception as exc:  # noqa: BLE001 - offline, auth, network: all reported alike
        first = first_line(exc)
        raise RuntimeFailure(
            f"the model is saved in {str(run)!r}, but pushing it to the hub as {repo_id!r} failed "
            f"({first}); log in (`hf auth login`), go online, and upload the folder with `hf "
            "upload`"
        ) from exc


def header_for(run: Run, scheduler: str, num_inference_steps: int, seed: int,
               autoencoder: str | Path | None = None, **extra) -> LatentHeader:
    """The header of latents sampled from `run`: its latent space, the autoencoder `ldlm
    decode` should use (`autoencoder`, else the run's) and how they were made."""
    m = run.meta
    return LatentHeader(
        latent_space=m.get("latent_space") or "unknown", latent_shape=run.latent_shape,
        autoencoder=autoencoder_location(autoencoder) if autoencoder is not None else m.get("autoencoder"),
        extra={"run": str(run.path), "scheduler": scheduler, "num_inference_steps": num_inference_steps,
               "seed": seed, **extra},
    )


def run_autoencoder(run: Run, autoencoder: str | Path | None = None,
                    device: str | torch.device | None = None) -> LatentAutoencoder:
    """The autoencoder whose latent space `run` was trained in (the run names it, or `autoencoder`
    overrides it); refuses one from another latent space."""
    return load_autoencoder_for(run.meta.get("latent_space"), run.latent_shape, run.meta.get("autoencoder"),
                                autoencoder, f"run {str(run.path)!r}", False, "encoded its store", device)


def run_store(run: Run, store: str | Path | None = None):
    """The store the run was trained on (or `store`), checked to be in the run's latent space."""
    from ldlm.store import LatentStore, store_exists

    path = store if store is not None else run.meta.get("store")
    if store is None and (not path or not store_exists(path)):
        raise InputError(f"run {str(run.path)!r} names store {path!r}, which is not here (a relative "
                         "path is relative to where the run was trained); pass --store STORE")
    opened = LatentStore.open(path)
    space = run.meta.get("latent_space")
    if space and space != "unknown" and opened.latent_space != space:
        raise InputError(f"--store {str(path)!r} holds latent space {opened.latent_space}, but run "
                         f"{str(run.path)!r} was trained in {space}; pass the store it was trained on")
    return opened


__all__ = ["RUN_FILE", "Run", "load_run", "read_run_meta", "save_run", "push_to_hub", "header_for",
           "run_autoencoder", "run_store"]
