"""The built-in default run: every stage on the corpus shipped with ldlm, in one folder.

    OUT/autoencoder/     train-autoencoder on the built-in E2E references
    OUT/latents.zarr     encode of the same texts
    OUT/reconstructions.jsonl   decode of the store's first rows beside their originals

A stage whose artefact is already there and complete is not run again, so a rerun after
an interruption continues, and the user can go on from any artefact with the normal
commands (`ldlm encode`, `ldlm decode`, `ldlm info`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldlm.atomic import atomic_file
from ldlm.autoencoder import is_autoencoder_dir, load_autoencoder
from ldlm.autoencoder.train import AutoencoderSpec, TrainingArgs, train_autoencoder
from ldlm.corpus import E2E_REFS
from ldlm.data import load_texts
from ldlm.decode import DecodeArgs, decode_latents, open_latents
from ldlm.encode import encode_dataset
from ldlm.metrics import ReconstructionScores, reconstruction_scores
from ldlm.progress import SILENT, Reporter


@dataclass
class QuickstartResult:
    out: Path
    latent_space: str
    latent_shape: tuple[int, int]
    rows: int
    heldout: dict | None  # reconstruction on the autoencoder's held-out slice
    sample: ReconstructionScores  # reconstruction of the store's first rows
    examples: list[dict]  # {"reference", "text"}


def run_quickstart(out: str | Path = "ldlm-quickstart", *, size: str = "small",
                   max_steps: int = 1200, examples: int = 200,
                   reporter: Reporter = SILENT) -> QuickstartResult:
    """Train an autoencoder on the built-in corpus, encode it, reconstruct from the store."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_texts(str(E2E_REFS))
    ae_dir = out / "autoencoder"
    if is_autoencoder_dir(ae_dir):
        reporter.log(f"reusing {ae_dir}")
        model = load_autoencoder(ae_dir)
    else:
        model, _ = train_autoencoder(
            rows, ae_dir, AutoencoderSpec(size=size),
            TrainingArgs(max_steps=max_steps, batch_size=64, learning_rate=2e-3, eval_rows=200),
            reporter=reporter,
        )
    store_path = out / "latents.zarr"
    result = encode_dataset(rows, ae_dir, store_path, reporter=reporter, model=model)

    source = open_latents(str(store_path))
    records = []
    for record in decode_latents(source, model, DecodeArgs(temperature=0.0, max_new_tokens=64),
                                 reporter=reporter):
        records.append(record)
        if len(records) == examples:
            break
    reporter.stop()  # the decode loop was left early: close its progress bar
    with atomic_file(out / "reconstructions.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    scores = reconstruction_scores([r["reference"] for r in records], [r["text"] for r in records])
    return QuickstartResult(
        out=out, latent_space=model.fingerprint, latent_shape=model.latent_shape,
        rows=result.rows, heldout=model.config.extra.get("reconstruction"), sample=scores,
        examples=[{"reference": r["reference"], "text": r["text"]} for r in records[:5]],
    )
