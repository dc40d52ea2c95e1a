"""The text autoencoder: model, loading, training."""

from __future__ import annotations

import json
from pathlib import Path

from ldlm.autoencoder.model import AutoencoderConfig, LatentAutoencoder
from ldlm.errors import InputError, first_line
from ldlm.recipe import RECONSTRUCTION_GATE

__all__ = ["AutoencoderConfig", "LatentAutoencoder", "autoencoder_location", "is_autoencoder_dir",
           "load_autoencoder", "load_autoencoder_for", "reconstruction_warning"]


def is_autoencoder_dir(path: str | Path) -> bool:
    """True when `path` is a folder saved by `LatentAutoencoder.save_pretrained`."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("config"), dict) and (
        "encoder_config" in data["config"]
    )


def load_autoencoder(path: str | Path, device: str | None = None,
                     flag: str = "--autoencoder") -> LatentAutoencoder:
    """Load an autoencoder folder (or hub id); clear errors (naming `flag`) for anything else."""
    from ldlm.files import missing, read_json, symlink_loop

    p = Path(path)
    if p.is_dir() and (p / "config.json").is_file():  # damaged JSON: one line naming the file
        read_json(p / "config.json", f"autoencoder {str(path)!r}", "restore it, or retrain the autoencoder "
                  "with `ldlm train-autoencoder`", error=InputError)
    if p.exists() and not is_autoencoder_dir(p):
        raise InputError(
            f"{flag} {str(path)!r} is not an ldlm autoencoder folder (no ldlm config.json); "
            "give the --out folder of `ldlm train-autoencoder`"
        )
    if not p.exists() and (str(path).startswith((".", "/")) or p.suffix or symlink_loop(p) is not None):
        raise InputError(f"{flag} {str(path)!r} {missing(p)}; give an existing folder")
    try:
        model = LatentAutoencoder.from_pretrained(str(path))
    except InputError:
        raise
    except Exception as exc:
        first = first_line(exc)
        damaged = " (a damaged config.json or weights)" if p.is_dir() else ""
        raise InputError(
            f"could not load {flag} {str(path)!r}{damaged}: {type(exc).__name__}: {first}; give the "
            "folder written by `ldlm train-autoencoder`"
        ) from exc
    if device is not None:
        model.to(device)
    return model.eval()


def autoencoder_location(autoencoder: str | Path) -> str:
    """An autoencoder's location as artefacts record it: absolute for a local folder, else the id."""
    return str(Path(autoencoder).resolve()) if Path(autoencoder).exists() else str(autoencoder)


def load_autoencoder_for(latent_space: str | None, latent_shape: tuple[int, int], named: str | None,
                         given: str | Path | None, owner: str, plural: bool, made: str,
                         device: str | None = None) -> LatentAutoencoder:
    """The autoencoder of latents that live in `latent_space` (k, d): `given`, else the one the
    latents' owner names; InputError when it is not here or defines another latent space.

    owner: how messages name the latents' owner ("the latents in stdin", plural; "run 'r'");
    made: what the right autoencoder did ("made them", "encoded its store").
    """
    if given is None:
        if not named or not Path(named).exists():
            raise InputError(f"{owner} {'name' if plural else 'names'} autoencoder {named!r}, which is "
                             f"not on this machine; pass --autoencoder AE_DIR (the one that {made})")
        given = named
    model = load_autoencoder(given, device=None if device is None else str(device))
    if latent_space and latent_space != "unknown" and model.fingerprint != latent_space:
        raise InputError(f"--autoencoder {str(given)!r} defines latent space {model.fingerprint}, but "
                         f"{owner} {'live in' if plural else 'was trained in'} latent space "
                         f"{latent_space}; pass the autoencoder that {made}")
    if tuple(model.latent_shape) != tuple(latent_shape):
        raise InputError(f"{owner} {'have shape' if plural else 'has latents of shape'} "
                         f"{tuple(latent_shape)}, but --autoencoder {str(given)!r} expects "
                         f"{tuple(model.latent_shape)}; pass the autoencoder that {made}")
    return model


def reconstruction_warning(reconstruction: dict | None) -> str | None:
    """The warning for an autoencoder whose held-out reconstruction (its config's
    extra["reconstruction"]) is below RECONSTRUCTION_GATE BLEU, with what to do; else None."""
    if not reconstruction or reconstruction.get("bleu") is None:
        return None
    bleu = float(reconstruction["bleu"])
    if bleu >= RECONSTRUCTION_GATE:
        return None
    return (f"warning: held-out reconstruction BLEU {bleu:.1f} is below {RECONSTRUCTION_GATE:g}: the "
            "latents carry little of the text, so the decoder writes what a small language model "
            "would whatever the latent, and diffusion on these latents adds little; train longer "
            "(--max-steps or --max-minutes), use a larger --size, check that --max-length does not "
            "cut the texts, or start from a pretrained --encoder")
