"""What an artefact is: a latent store, an autoencoder folder, a run, a classifier, a latent file.

Each kind is read by the same loader the stages use (`LatentStore.open`, `load_autoencoder`,
`load_run`, `ConditionClassifier.from_pretrained`, `read_header`/`read_frames`), with the same
checks of format, version, field types and weights (an autoencoder's fingerprint recomputed from
its weights): `info` never calls whole what a stage refuses, and damage is the same one line.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from ldlm.autoencoder import is_autoencoder_dir, load_autoencoder, reconstruction_warning
from ldlm.autoencoder.train import CHECKPOINT_FILE as AE_CHECKPOINT
from ldlm.checkpoints import list_checkpoints
from ldlm.classifier import CLASSIFIER_FILE, FLUENCY_FILE, ConditionClassifier, read_classifier_record
from ldlm.errors import InputError, RuntimeFailure
from ldlm.files import check_no_loop, missing, own_file, read_log
from ldlm.latent_file import MAGIC, read_frames, read_header
from ldlm.run import RUN_FILE, load_run
from ldlm.store import LatentStore, is_store, is_url, store_location


def describe(path: str) -> dict:
    """A JSON-able description of the artefact at `path`."""
    path = store_location(path)  # file:// -> a local path
    if not is_url(path):
        check_no_loop(path, "PATH")
    if is_url(path) or is_store(path):  # at a URL only a store can be described
        store = LatentStore.open(path, require_complete=False)
        a = store.attrs
        done, total = store.progress()  # a chunk whose latents file is gone is not done
        lost = store.lost_chunks()
        return {
            "kind": "latent store", "path": path, "rows": a["rows"],
            "latent_shape": a["latent_shape"], "dtype": a["dtype"],
            "complete": bool(a.get("complete")) and not lost, "chunks_done": f"{done}/{total}",
            **({"lost_chunks": len(lost), "repair": "rerun `ldlm encode` with the same arguments"}
               if lost else {}),
            "latent_space": a.get("latent_space"), "autoencoder": a.get("autoencoder"),
            "source": a.get("source"), "split": a.get("split"), "column": a.get("column"),
            "skipped_rows": a.get("skipped_rows"), "truncated_rows": a.get("truncated_rows"),
            "has_stats": "stats_mean" in a,
            **_describe_conditions(a.get("condition")),
        }
    p = Path(path)
    # the second: a damaged config.json (while the final model is saved, there is none yet)
    if is_autoencoder_dir(p) or ((p / "encoder_tokenizer").is_dir() and os.path.lexists(p / "config.json")):
        return _describe_autoencoder(p, path)
    ae_checkpoints = list_checkpoints(p, AE_CHECKPOINT) if p.is_dir() else []
    if ae_checkpoints:
        # train-autoencoder was stopped before it wrote the model: say so, never "complete"
        return {"kind": "autoencoder training (unfinished)", "path": path, "finished": False,
                "checkpoints": [c.name for c in ae_checkpoints],
                "resume": "rerun train-autoencoder with --resume"}
    if os.path.lexists(p / RUN_FILE) or (p.is_dir() and any(p.glob("checkpoint-*"))):
        return _describe_run(p)
    if os.path.lexists(p / CLASSIFIER_FILE):
        return _describe_classifier(p)
    if p.is_file():
        with open(p, "rb") as fh:
            if fh.read(len(MAGIC)) == MAGIC:
                fh.seek(0)
                header = read_header(fh, repr(path))
                rows = sum(x.shape[0] for x, _ in read_frames(fh, header, repr(path)))
                return {"kind": "latent file", "path": path, "latent_space": header.latent_space,
                        "latent_shape": list(header.latent_shape),
                        "autoencoder": header.autoencoder, **header.extra, "rows": rows}
    if not p.exists() and "://" not in path:
        raise InputError(f"PATH {path!r} {missing(p)}; give a store, autoencoder, run, classifier or "
                         "latent file")
    raise InputError(
        f"PATH {path!r} is not an ldlm artefact (latent store, autoencoder, run, condition "
        "classifier or latent file)"
    )


def _describe_autoencoder(p: Path, path: str) -> dict:
    model = load_autoencoder(p, flag="PATH")  # weights read and the fingerprint recomputed, as decode does
    cfg = asdict(model.config)
    try:
        return {
            "kind": "autoencoder", "path": path, "latent_space": model.fingerprint,
            "latent_shape": list(model.latent_shape),
            "pooling": cfg["pooling"], "max_length": cfg["max_length"],
            "encoder": cfg.get("encoder_source") or f"{cfg['encoder_config']['model_type']} "
            f"from scratch ({cfg.get('size')})",
            "decoder": cfg.get("decoder_source") or f"{cfg['decoder_config']['model_type']} "
            f"from scratch ({cfg.get('size')})",
            "latent_injection": cfg["latent_injection"],
            "latent_noise": cfg["latent_noise"],
            "checkpoints": [c.name for c in list_checkpoints(p, AE_CHECKPOINT)],
            **{k: v for k, v in (cfg.get("extra") or {}).items()},
            **_gate((cfg.get("extra") or {}).get("reconstruction")),
        }
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise RuntimeFailure(f"autoencoder {path!r} has a damaged config.json ({type(exc).__name__}: "
                             f"{exc}); retrain it or resume its training with --resume") from exc


def _gate(reconstruction: dict | None) -> dict:
    """{"warning": ...} when the held-out reconstruction says the latents carry little."""
    warning = reconstruction_warning(reconstruction)
    return {"warning": warning} if warning else {}


def _describe_run(p: Path) -> dict:
    checkpoints = sorted(p.glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[-1])
                         if c.name.split("-")[-1].isdigit() else -1)
    facts: dict = {"kind": "diffusion run", "path": str(p), "finished": os.path.lexists(p / RUN_FILE),
                   "checkpoints": [c.name for c in checkpoints]}
    if facts["finished"]:
        meta = load_run(p).meta  # checked and loaded as `sample` loads it
        training = meta.get("training") or {}
        facts.update({
            "latent_space": meta.get("latent_space"), "latent_shape": meta.get("latent_shape"),
            "autoencoder": meta.get("autoencoder"), "store": meta.get("store"),
            "arch": meta.get("arch"), "objective": meta.get("objective"),
            "schedule": meta.get("schedule"), "self_condition": meta.get("self_condition"),
            "steps": meta.get("steps"), "batch_size": training.get("batch_size"),
            "learning_rate": training.get("learning_rate"),
        })
    owner = f"run {str(p)!r}"
    if os.path.lexists(p / "metrics.jsonl"):
        metrics = own_file(p, "metrics.jsonl", owner)  # a link out of the run is refused, as train does
        fds = [x for x in read_log(metrics, owner, "delete the damaged line (or the file: it holds "
                                   "figures only)") if "frechet_distance" in x]
        if fds:
            facts["last_frechet_distance"] = fds[-1]["frechet_distance"]
            if fds[-1].get("fd_floor") is not None:  # runs before the floor was logged lack it
                facts["last_fd_floor"] = fds[-1]["fd_floor"]
    return facts


def _describe_classifier(p: Path) -> dict:
    model = ConditionClassifier.from_pretrained(p)  # weights, n-grams and fluency model, as sample loads them
    meta = read_classifier_record(p)
    cfg = model.config
    lm_order = (meta.get("training") or {}).get("lm_order")  # 0 or absent: no fluency model
    return {"kind": "condition classifier", "path": str(p), "store": meta.get("store"),
            "ngrams": cfg.get("num_ngrams"), "ngram_order": cfg.get("ngram_order"),
            "train_rows": meta.get("train_rows"), "held_out_rows": meta.get("eval_rows"),
            "held_out_accuracy": meta.get("accuracy"), "held_out_precision": meta.get("precision"),
            "held_out_recall": meta.get("recall"), **_describe_conditions(cfg.get("condition")),
            "fluency_model": (f"{lm_order}-grams" if lm_order and (p / FLUENCY_FILE).is_file()
                              else None),
            "fluency_held_out_perplexity": meta.get("perplexity")}


def _describe_conditions(spec: dict | None) -> dict:
    """The condition a store keeps per row (encode --condition-column), if any."""
    if not spec or not isinstance(spec, dict):
        return {}
    labels = spec.get("labels") if isinstance(spec.get("labels"), list) else []
    kind = spec.get("type")
    detail = (f"{len(labels)} labels" if kind == "label"
              else f"text, up to {spec.get('max_length')} tokens")
    return {"condition": f"{spec.get('column')} ({detail})"}
