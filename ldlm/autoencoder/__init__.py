"""The text autoencoder: model, loading, training."""

from __future__ import annotations

import json
from pathlib import Path

from ldlm.autoencoder.model import AutoencoderConfig, LatentAutoencoder
from ldlm.errors import InputError, first_line

__all__ = ["AutoencoderConfig", "LatentAutoencoder", "load_autoencoder", "is_autoencoder_dir"]


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


def load_autoencoder(path: str | Path, device: str | None = None) -> LatentAutoencoder:
    """Load an autoencoder folder (or hub id); clear errors for anything else."""
    p = Path(path)
    if p.exists() and not is_autoencoder_dir(p):
        raise InputError(
            f"--autoencoder {str(path)!r} is not an ldlm autoencoder folder (no ldlm config.json); "
            "give the --out folder of `ldlm train-autoencoder`"
        )
    if not p.exists() and (str(path).startswith((".", "/")) or p.suffix):
        raise InputError(f"--autoencoder {str(path)!r} does not exist; give an existing folder")
    try:
        model = LatentAutoencoder.from_pretrained(str(path))
    except InputError:
        raise
    except Exception as exc:
        first = first_line(exc)
        raise InputError(
            f"could not load --autoencoder {str(path)!r}: {first}; give the folder written by "
            "`ldlm train-autoencoder`"
        ) from exc
    if device is not None:
        model.to(device)
    return model.eval()
