"""Decoding speed: `ldlm decode`'s batched, KV-cached greedy decoding against decoding the same
latents one at a time, in the same run, on the same latents, with the same outputs checked.

    python benchmarks/decode_throughput.py AE_DIR LATENTS [--rows 256] [--batch-size 64]
        [--max-new-tokens 64] [--device cpu|cuda] [--threads N]

LATENTS is a store or latent file (`ldlm encode` / `ldlm sample --out`). Three ways:

- batched + KV cache: `decode_latents` (what `ldlm decode` runs: batches of --batch-size,
  transformers' generate with its KV cache);
- one at a time + KV cache: the same call with batch size 1;
- one at a time, no cache: every new token re-reads the whole prefix (use_cache=False),
  the naive loop a first implementation writes.

The one-at-a-time ways decode a quarter of the rows (they are slow) and are scaled per text.
Prints texts/s for each and the ratios to the naive baseline; one JSON line last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from ldlm.autoencoder import load_autoencoder
from ldlm.decode import DecodeArgs, decode_latents, open_latents


def first_rows(path: str, rows: int) -> torch.Tensor:
    source = open_latents(path)
    got, n = [], 0
    for x, _meta in source.frames:
        got.append(torch.from_numpy(x))
        n += len(x)
        if n >= rows:
            break
    return torch.cat(got)[:rows]


def batched(model, path: str, x: torch.Tensor, batch_size: int, max_new: int) -> tuple[float, list[str]]:
    source = dataclasses.replace(open_latents(path), frames=iter([(x.numpy(), None)]), rows=len(x))
    start = time.perf_counter()
    texts = [r["text"] for r in decode_latents(
        source, model, DecodeArgs(temperature=0.0, max_new_tokens=max_new, batch_size=batch_size))]
    return time.perf_counter() - start, texts


def uncached(model, x: torch.Tensor, max_new: int) -> tuple[float, list[str]]:
    """Greedy, one latent at a time, recomputing the whole prefix for every token."""
    tok = model.decoder_tokenizer
    start = time.perf_counter()
    texts = []
    with torch.inference_mode():
        for row in x:
            prefix = model._prefix_embeds(row[None].to(model.device))  # (1, k', h)
            ids = [tok.bos_token_id]
            for _ in range(max_new):
                emb = model.decoder.get_input_embeddings()(torch.tensor([ids], device=model.device))
                embeds = torch.cat([prefix, emb], 1)
                mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=model.device)
                logits = model.decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
                nxt = int(logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                ids.append(nxt)
            texts.append(tok.decode(ids, skip_special_tokens=True).strip())
    return time.perf_counter() - start, texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("autoencoder")
    p.add_argument("latents")
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_autoencoder(a.autoencoder).to(a.device).eval()
    x = first_rows(a.latents, a.rows)
    few = x[: max(1, len(x) // 4)]
    batched(model, a.latents, x[:8], a.batch_size, a.max_new_tokens)  # warm up
    t_batch, texts = batched(model, a.latents, x, a.batch_size, a.max_new_tokens)
    t_one, one = batched(model, a.latents, few, 1, a.max_new_tokens)
    t_naive, naive = uncached(model, few, a.max_new_tokens)
    same = sum(u == v for u, v in zip(texts, naive, strict=False)) / len(naive)
    rate = {"batched_kv": len(x) / t_batch, "one_at_a_time_kv": len(few) / t_one,
            "one_at_a_time_no_cache": len(few) / t_naive}
    base = rate["one_at_a_time_no_cache"]
    for name, r in rate.items():
        print(f"{name:24s} {r:8.1f} texts/s  {r / base:6.2f}x")
    print(f"greedy outputs equal between batched and naive: {same:.3f} of {len(naive)} texts")
    print(json.dumps({"rows": len(x), "rows_one_at_a_time": len(few), "batch_size": a.batch_size,
                      "threads": torch.get_num_threads(), "device": a.device,
                      "texts_per_s": {k: round(v, 2) for k, v in rate.items()},
                      "ratio_to_naive": {k: round(v / base, 2) for k, v in rate.items()},
                      "same_output": same}))


if __name__ == "__main__":
    main()
