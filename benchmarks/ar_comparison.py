"""ldlm against an autoregressive GPT-2 of the same size, trained for the same time, on E2E.

    python benchmarks/ar_comparison.py [--data ../shared/data/e2e/trainset.csv]
        [--workdir /tmp/ldlm-vs-ar] [--ae-steps 2000] [--diffusion-steps 4000]
        [--num-samples 1000] [--seeds 3] [--threads 1]

The protocol of ../shared/data/e2e/SOURCE.md for unconditional generation: rows with index
i % 20 == 0 of trainset.csv are held out (2,104 refs); everything is trained on the others.

1. ldlm: train-autoencoder (size small), encode, train (the default denoiser: mlp, x0), all
   with the library functions the CLI calls. Its budget is the CPU time of the three stages.
2. AR: a GPT-2 with the same parameter count as everything ldlm trained (encoder, compressor,
   decoder and denoiser), the same tokenizer as ldlm's decoder, trained on the same texts for
   the same CPU time (steps from a short calibration, stopped at the budget in any case).
3. Both draw `--num-samples` texts: ldlm with DPM-Solver at 20 steps and greedy decoding;
   GPT-2 with ancestral sampling (temperature 1) and with nucleus sampling (top-p 0.9).
   Generation time per sample is the wall time of the whole batch / the sample count.
4. `ldlm.evaluate.evaluate_texts` scores each against the held-out slice (MAUVE on MiniLM
   features, diversity, memorisation and exact copies of training texts), over `--seeds`
   random subsets, with the human row (held-out refs) beside.

CPU time (time.process_time) is the budget rather than wall time because this runs on a
shared 2-core machine: with one thread per process, CPU time is what a quiet core would
take. Every stage is skipped when its artefact exists, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from ldlm.data import load_texts
from ldlm.progress import Reporter

ROOT = Path(__file__).resolve().parents[1]


class Ticker(Reporter):
    """Prints every 200th step with its fields, so a log shows progress."""

    def start(self, description: str, total: int | None = None, unit: str = "it") -> None:
        self.what, self.total, self.n = description, total, 0

    def advance(self, n: int = 1, **fields: object) -> None:
        self.n += n
        if self.n % 200 == 0:
            print(f"{self.what} {self.n}/{self.total} {fields}", flush=True)


def split(data: str, work: Path) -> tuple[Path, Path]:
    """Write train.txt (i % 20 != 0) and heldout.txt (i % 20 == 0) once."""
    train, held = work / "train.txt", work / "heldout.txt"
    if not held.exists():
        # two refs hold a line break: one line per text in the files
        rows = [" ".join(t.split()) for t in load_texts(data, text_column="ref").texts]
        train.write_text("".join(t + "\n" for i, t in enumerate(rows) if i % 20 != 0))
        held.write_text("".join(t + "\n" for i, t in enumerate(rows) if i % 20 == 0))
    return train, held


def timed(budget: dict, key: str, fn):
    """Run fn(), recording its CPU and wall seconds under `key` (skipped when recorded)."""
    if key in budget:
        return
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    budget[key] = {"cpu_s": round(time.process_time() - cpu, 1),
                   "wall_s": round(time.perf_counter() - wall, 1)}


def train_ldlm(a, work: Path, train_txt: Path, budget: dict) -> None:
    from ldlm.autoencoder import AutoencoderConfig
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.encode import encode_dataset
    from ldlm.train import TrainArgs, train_diffusion

    rows = load_texts(str(train_txt))
    timed(budget, "autoencoder", lambda: train_autoencoder(
        rows, work / "autoencoder", AutoencoderConfig(size="small"),
        AutoencoderTrainArgs(max_steps=a.ae_steps, batch_size=64, learning_rate=1e-3, eval_rows=200),
        Ticker()))
    timed(budget, "encode", lambda: encode_dataset(rows, work / "autoencoder", work / "train.zarr"))
    never = 10**9  # no sampling or extra checkpoints during training
    timed(budget, "diffusion", lambda: train_diffusion(work / "train.zarr", work / "run", TrainArgs(
        max_steps=a.diffusion_steps, batch_size=256, learning_rate=1e-3, lr_warmup_steps=200,
        save_samples_epochs=never, save_model_epochs=never, eval_rows=0), Ticker()))


def ldlm_parameters(work: Path) -> int:
    """Everything ldlm trained: encoder, compressor, decoder and denoiser."""
    from ldlm.autoencoder import load_autoencoder
    from ldlm.run import load_run

    return (count_parameters(load_autoencoder(work / "autoencoder"))
            + count_parameters(load_run(work / "run").model))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ar_config(target: int, tok):
    """The GPT-2 shape (width multiple of 32, 4 heads, 2-8 layers) closest to `target` params."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = len(tok)
    best = None
    for n_embd in range(64, 513, 32):
        for n_layer in range(2, 9):
            cfg = GPT2Config(vocab_size=vocab, n_positions=128, n_embd=n_embd, n_layer=n_layer,
                             n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
            # embeddings + blocks + final LN (head tied): 12 d^2 + 13 d per block
            n = vocab * n_embd + 128 * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, cfg)
    model = GPT2LMHeadModel(best[1])
    return model


def ar_batches(ids: list[list[int]], batch_size: int, pad: int, gen: torch.Generator):
    while True:
        for i in torch.randperm(len(ids), generator=gen).split(batch_size):
            rows = [ids[j] for j in i.tolist()]
            width = max(map(len, rows))
            x = torch.full((len(rows), width), pad)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                x[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
            labels = x.masked_fill(mask == 0, -100)
            yield x, mask, labels


def train_ar(a, work: Path, train_txt: Path, budget: dict) -> None:
    """GPT-2 on the same texts and tokenizer, for ldlm's CPU time."""
    from ldlm.autoencoder.tokenizer import train_tokenizer

    out = work / "ar"
    if (out / "config.json").exists():
        return
    target = a.ar_params or ldlm_parameters(work)
    texts = train_txt.read_text().splitlines()
    tok = train_tokenizer(texts, 4096)  # the recipe and size of ldlm's decoder tokenizer
    model = ar_config(target, tok)
    ids = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"][:126], tok.eos_token_id]
           for t in texts]
    allowed = a.ar_budget_cpu_s or sum(budget[k]["cpu_s"] for k in ("autoencoder", "encode", "diffusion"))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    batches = ar_batches(ids, 64, tok.pad_token_id, gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step() -> float:
        x, mask, labels = next(batches)
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    model.train()
    start = time.process_time()
    wall = time.perf_counter()
    for _ in range(5):  # warm up
        step()
    t0 = time.process_time()
    for _ in range(20):  # calibrate: CPU seconds per step
        step()
    per_step = (time.process_time() - t0) / 20
    total = max(1, int((allowed - (time.process_time() - start)) / per_step))
    warmup = min(100, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(s, total) / total))))
    losses, steps = [], 25
    for _ in range(total):
        losses.append(step())
        sched.step()
        steps += 1
        if steps % 200 == 0:
            print(f"ar step {steps}/{total + 25} loss {sum(losses[-200:]) / len(losses[-200:]):.3f}",
                  flush=True)
        if time.process_time() - start >= allowed:
            break
    budget["ar"] = {"cpu_s": round(time.process_time() - start, 1),
                    "wall_s": round(time.perf_counter() - wall, 1), "steps": steps,
                    "params": count_parameters(model), "ldlm_params": target,
                    "final_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4)}
    model.save_pretrained(out)
    tok.save_pretrained(out)


def generate_ldlm(a, work: Path) -> dict:
    from ldlm.autoencoder import load_autoencoder
    from ldlm.sample import sample_latents

    ae = load_autoencoder(work / "autoencoder")
    start = time.perf_counter()
    latents, _ = sample_latents(work / "run", num_samples=a.num_samples, num_inference_steps=20,
                                scheduler="dpm-solver", seed=1, batch_size=250,
                                device="cpu")
    texts: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(latents), 250):
            texts += ae.generate(torch.from_numpy(latents[i:i + 250]), max_new_tokens=64)
    return {"texts": texts, "seconds": time.perf_counter() - start}


def generate_ar(a, work: Path, top_p: float) -> dict:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(work / "ar").eval()
    tok = AutoTokenizer.from_pretrained(work / "ar")
    torch.manual_seed(1)
    start = time.perf_counter()
    texts: list[str] = []
    with torch.inference_mode():
        for i in range(0, a.num_samples, 250):
            n = min(250, a.num_samples - i)
            bos = torch.full((n, 1), tok.bos_token_id)
            out = model.generate(bos, attention_mask=torch.ones_like(bos), do_sample=True,
                                 temperature=1.0, top_p=top_p, top_k=0, max_new_tokens=64,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            texts += [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
    return {"texts": texts, "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/e2e/trainset.csv"))
    p.add_argument("--workdir", default="/tmp/ldlm-vs-ar")
    p.add_argument("--ae-steps", type=int, default=2000)
    p.add_argument("--diffusion-steps", type=int, default=4000)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mauve-features", default="minilm")
    p.add_argument("--stop-after", choices=["ldlm", "ar", "generate"], default=None)
    p.add_argument("--only-ar", action="store_true",
                   help="train only the GPT-2 (alongside a running ldlm stage), with the two below")
    p.add_argument("--ar-params", type=int, default=None, help="its parameter count (default: ldlm's)")
    p.add_argument("--ar-budget-cpu-s", type=float, default=None,
                   help="its CPU seconds (default: ldlm's three stages)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    budget_file = work / "budget.json"
    budget = json.loads(budget_file.read_text()) if budget_file.exists() else {}

    def save():
        budget_file.write_text(json.dumps(budget, indent=2))

    train_txt, held_txt = split(a.data, work)
    if a.only_ar:
        budget = {}
        train_ar(a, work, train_txt, budget)
        (work / "budget_ar.json").write_text(json.dumps(budget, indent=2))
        return
    train_ldlm(a, work, train_txt, budget)
    save()
    if a.stop_after == "ldlm":
        return
    train_ar(a, work, train_txt, budget)
    save()
    if a.stop_after == "ar":
        return
    samples_file = work / "samples.json"
    samples = json.loads(samples_file.read_text()) if samples_file.exists() else {}
    for name, fn in [("ldlm (DPM-Solver 20, greedy)", lambda: generate_ldlm(a, work)),
                     ("GPT-2 (temperature 1)", lambda: generate_ar(a, work, 1.0)),
                     ("GPT-2 (top-p 0.9)", lambda: generate_ar(a, work, 0.9))]:
        if name not in samples:
            samples[name] = fn()
            samples_file.write_text(json.dumps(samples, indent=1, ensure_ascii=False))
    if a.stop_after == "generate":
        return
    ar_budget = work / "budget_ar.json"
    if ar_budget.exists():
        budget.update(json.loads(ar_budget.read_text()))
    score(a, work, samples, train_txt, held_txt, budget)


def score(a, work: Path, samples: dict, train_txt: Path, held_txt: Path, budget: dict) -> None:
    """One table: each system beside the human row, mean ± std over the seeds."""
    from ldlm.evaluate import LABELS, evaluate_texts

    train = train_txt.read_text().splitlines()
    held = held_txt.read_text().splitlines()
    results = {}
    for name, s in samples.items():
        results[name] = evaluate_texts(s["texts"], references=held, train_texts=train,
                                       num_samples=a.num_samples, seeds=a.seeds,
                                       mauve_features=a.mauve_features)
        print(name, results[name], flush=True)
    names = list(results)
    human = results[names[0]]
    header = ["metric", *names, "human (held-out refs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(ev, row, key):
        m = ev.summary(row, key)
        if m is None:
            return "-"
        digits = 1 if key == "words" else 3
        return f"{m[0]:.{digits}f} ± {m[1]:.{digits}f}"

    for key, label in LABELS.items():
        if human.summary("model", key) is None:
            continue
        if key == "mauve":
            label = f"MAUVE ({human.mauve_features})"
        lines.append(f"| {label} | " + " | ".join(cell(results[n], "model", key) for n in names)
                     + f" | {cell(human, 'reference', key)} |")
    per = [f"{1000 * samples[n]['seconds'] / len(samples[n]['texts']):.1f}" for n in names]
    lines.append("| generation ms / sample | " + " | ".join(per) + " | - |")
    table = "\n".join(lines)
    print(table)
    (work / "table.md").write_text(table + "\n")
    (work / "scores.json").write_text(json.dumps(
        {"budget": budget, "results": {n: results[n].as_dict() for n in names},
         "generation_seconds": {n: samples[n]["seconds"] for n in names}}, indent=1))


if __name__ == "__main__":
    main()
