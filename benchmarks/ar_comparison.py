"""ldlm against an autoregressive GPT-2 of the same size and CPU budget, on one corpus.

    python benchmarks/ar_comparison.py --corpus e2e|ag_news [--budget 1800] [--split test|dev]
        [--workdir .bench/compare-e2e-test-1800] [--system all|ldlm|ar] [--num-samples 1000]
        [--sampling-seeds 5] [--seeds 3] [--autoencoder AE_DIR] [--ldlm JSON]
        [--ar-workdir DIR | --no-ar] [--gpt2-top-p 0.9] [--results FILE]
    nox -s compare -- e2e          (the same, both systems side by side, then scored)

The corpora (`prepare`, written once into WORKDIR/data):
- e2e: `ref` of ../shared/data/e2e/trainset.csv, one text per line (line breaks inside a
  ref become spaces). SOURCE.md's unconditional split: rows i % 20 == 0 are held out (2,104
  refs: the MAUVE yardstick and, disjoint from it, the human row); everything trains on the
  rest. --split dev holds out i % 20 == 10 as well and scores against those instead, so that
  tuning never sees the test rows.
- ag_news: `title + ". " + description` of ../shared/data/ag_news/train.csv, cleaned as a user
  would clean a crawl (`clean_ag_news`: the HTML entities that lost their '&' (' #39;' -> "'",
  ' #36;' -> '$'), other entities unescaped, tags and backslash line breaks removed,
  whitespace collapsed). Trains on train.csv rows i % 20 != 0 (19,000); the yardstick is
  test.csv (1,300), the human row train.csv rows i % 20 == 0 (1,000, never trained on).
  --split dev trains on i % 20 not in (0, 10) and scores against i % 20 == 10.

The systems, each given `--budget` CPU-seconds (time.process_time, one torch thread):
- ldlm with its defaults, as a user runs the README's four commands with a time budget:
  `train-autoencoder --max-minutes` (AE_SHARE of the budget), `encode`, `train
  --max-minutes` (the rest), then `sample --num-samples N | decode`, every other option
  at its default. `--autoencoder` reuses a trained autoencoder (the fixed-autoencoder
  comparison: the budget then pays for encode and train only). `--ldlm '{"autoencoder":
  {...}, "train": {...}, "sample": {...}, "decode": {...}, "ae_share": 0.5}'` overrides
  options (the ablations; the headline runs pass none; RECIPE is what the README adds to
  each command's defaults). `"adapt": {...}` ends with `adapt-decoder` (ADAPT_SHARE of the
  budget, or "adapt_share", taken from the denoiser's), and ldlm's texts are then decoded by the
  adapted decoder; a part given as null is dropped.
- GPT-2 trained from scratch: the parameter count of everything ldlm trains (encoder,
  compressor, decoder, denoiser; a frozen pretrained encoder is not counted, and is named),
  a byte-level BPE trained the way ldlm's is, AdamW, warmup and cosine to 10%, batch 64,
  length-grouped batches (the same saving ldlm's autoencoder gets), for the same CPU time.
  Sampled with temperature 1 and with top-p 0.9.

Sampling seeds: each system draws N texts at each of `--sampling-seeds` seeds (--sample-seed,
+1, ...: different latents, noise and decoding for ldlm, different torch seeds for the GPT-2,
different random latents for the control), from the models trained once. Each set is scored
by `ldlm.evaluate.evaluate_texts` (MAUVE on all-MiniLM-L6-v2 features, Div, Mem, copy rate,
words per text) over `--seeds` MAUVE draws of its own (the yardstick subset and the k-means
seed; draws 100 * seed + 0, 1, ...: new for each sampling seed, the same for every system at
that seed). The human row at a seed is ldlm's evaluation's reference row: N held-out human
texts drawn with that seed's draws, disjoint from its yardstick (on the AG News test split, the
1,000 held-out train rows, all of them each time). MAUVE is reported as the mean ± std over
the sampling seeds of each seed's mean over its draws: the ± is how much a system's score moves
with the texts it happens to write. ms per sample is the wall time of generation / N on one
thread. Beside ldlm: the control (its decoder fed random latents with the store's
per-dimension mean and std) and the autoencoder's reconstruction of held-out texts.

Dev ablations: `--split dev` with no `--ldlm` is the dev headline (ldlm at its defaults and a
GPT-2 trained on the dev split's training rows, same budget); an ablation (`--split dev
--ldlm '{...}' --workdir .bench/abl-NAME --ar-workdir .bench/compare-e2e-dev-1800`) reuses that
GPT-2, its samples and its scores, so each lever is read against the same dev GPT-2 row at the
headline's N, seeds and MAUVE buckets (a tenth of N) without training it again.

Written: WORKDIR/table.md (markdown), WORKDIR/scores.json (every evaluation, ten samples of
each system at the first seed), WORKDIR/compare.json and, for a run with no --ldlm and no
--autoencoder, benchmarks/results/compare-CORPUS[-dev]-BUDGET.json (or --results):
    {"corpus", "budget_cpu_s", "split", "n", "systems": {"ldlm" | "control" | "gpt2" |
     ["gpt2_top_p"] | "human": {"mauve": [one per sampling seed], "div", "mem", "copy",
     "reconstruction_bleu", "ms_per_sample", "params", "cpu_s"}}}
(div, mem, copy and ms_per_sample: means over the sampling seeds; null where not meaningful:
the control's params and cpu_s are the autoencoder's, which it runs alone.)

Resuming: every stage is skipped when its artefact exists: the trained systems (WORKDIR/
ldlm_budget.json, WORKDIR/ar), each system's texts at each sampling seed (WORKDIR/samples/
KEY-nN-seedS.json) and their scores (WORKDIR/scores/, kept while N, the draws and the texts
are the same), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import random
import re
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
AE_SHARE = 0.5  # the share of the budget a user gives train-autoencoder (README, own corpus)
ADAPT_SHARE = 1 / 6  # with an "adapt" stage: its share, taken from the denoiser's (300 of 1,800 CPU-s)
# the README's recipe beyond each command's defaults (none: its four commands). adapt-decoder as a
# last stage ({"adapt": {}}) took dev MAUVE from 0.793 to 0.835 with the prefix decoder, and was the
# recipe until the cross-attention decoder scored 0.873 without it (issue 29)
RECIPE: dict = {}


def ldlm_recipe(overrides: dict) -> dict:
    """RECIPE with --ldlm's overrides on top; an override of None removes that part of the recipe."""
    merged = {**RECIPE, **overrides}
    return {k: v for k, v in merged.items() if v is not None}
SHOWN = 10  # samples kept verbatim per system
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]  # AG News class_index 1-4
GUIDANCE = [0.0, 1.0, 2.0, 3.0, 5.0]  # the guidance scales a class-conditional comparison sweeps


# ----- corpora ------------------------------------------------------------------------------
def clean_ag_news(text: str) -> str:
    """AG News as crawled -> plain text (see the module docstring)."""
    text = re.sub(r"\s?#(\d+);", lambda m: chr(int(m.group(1))), text)
    text = re.sub(r"<[^>]*>", " ", html.unescape(text))
    return " ".join(text.replace("\\", " ").split())


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def corpus_texts(corpus: str, split: str, data: Path = DATA) -> dict[str, list[str]]:
    """{"train": ..., "refs": ..., "human": ... or None} for a corpus and split."""
    held = {0} if split == "test" else {0, 10}
    if corpus == "e2e":
        refs = [" ".join(r["ref"].split()) for r in _rows(data / "e2e" / "trainset.csv")]
        score = 0 if split == "test" else 10
        return {"train": [t for i, t in enumerate(refs) if i % 20 not in held],
                "refs": [t for i, t in enumerate(refs) if i % 20 == score], "human": None}
    if corpus == "ag_news":
        def text(r):
            return clean_ag_news(f"{r['title']}. {r['description']}")

        def pick(rows, keep):
            return [text(r) for i, r in enumerate(rows) if keep(i)], \
                [TOPICS[int(r["class_index"]) - 1] for i, r in enumerate(rows) if keep(i)]

        rows = _rows(data / "ag_news" / "train.csv")
        out = {}
        out["train"], out["train_topics"] = pick(rows, lambda i: i % 20 not in held)
        if split == "test":
            out["refs"], out["refs_topics"] = pick(_rows(data / "ag_news" / "test.csv"), lambda i: True)
            out["human"], out["human_topics"] = pick(rows, lambda i: i % 20 == 0)
        else:
            out["refs"], out["refs_topics"] = pick(rows, lambda i: i % 20 == 10)
            out["human"] = out["human_topics"] = None
        return out
    raise ValueError(f"Unknown corpus {corpus!r}; choose e2e or ag_news")


def prepare(corpus: str, split: str, work: Path, data: Path = DATA) -> dict[str, Path]:
    """Write the corpus files once: train.txt, refs.txt (and human.txt), one text a line, and
    for a labelled corpus train.csv, refs.csv (and human.csv) with columns text and topic."""
    folder = work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {f"{key}{ext}": folder / f"{key}{ext}" for key in ("train", "refs", "human")
             for ext in (".txt", ".csv")}
    if not paths["train.txt"].exists():
        texts = corpus_texts(corpus, split, data)
        for key in ("human", "refs", "train"):  # train.txt last: it marks the folder whole
            if texts[key] is None:
                continue
            if texts.get(f"{key}_topics") is not None:
                with open(paths[f"{key}.csv"], "w", newline="", encoding="utf-8") as fh:
                    out = csv.writer(fh)
                    out.writerow(["text", "topic"])
                    out.writerows(zip(texts[key], texts[f"{key}_topics"], strict=True))
            paths[f"{key}.txt"].write_text("".join(t + "\n" for t in texts[key]), encoding="utf-8")
    found = {k: p for k, p in paths.items() if p.exists()}
    return {**{k[:-4]: p for k, p in found.items() if k.endswith(".txt")},
            **{k.replace(".", "_"): p for k, p in found.items() if k.endswith(".csv")}}


def topics(path: Path) -> list[str]:
    """The topic column of a prepared CSV."""
    return [r["topic"] for r in _rows(path)]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# ----- budgets ------------------------------------------------------------------------------
class Spent:
    """CPU and wall seconds per stage, saved as JSON (a rerun skips what is recorded)."""

    def __init__(self, path: Path):
        self.path = path
        self.stages = json.loads(path.read_text()) if path.exists() else {}

    def run(self, key: str, fn) -> None:
        if key in self.stages:
            return
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        self.stages[key] = {"cpu_s": round(time.process_time() - cpu, 1),
                            "wall_s": round(time.perf_counter() - wall, 1)}
        self.path.write_text(json.dumps(self.stages, indent=2))
        print(f"{key}: {self.stages[key]}", flush=True)

    @property
    def cpu(self) -> float:
        return sum(s["cpu_s"] for s in self.stages.values())


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----- ldlm ---------------------------------------------------------------------------------
def split_autoencoder_options(options: dict):
    """--ldlm's "autoencoder" options -> (AutoencoderConfig, AutoencoderTrainArgs fields)."""
    from ldlm.autoencoder import AutoencoderConfig

    fields = AutoencoderConfig.__dataclass_fields__
    return (AutoencoderConfig(**{k: v for k, v in options.items() if k in fields}),
            {k: v for k, v in options.items() if k not in fields})


def train_ldlm(a, paths: dict[str, Path], work: Path) -> None:
    """The README's commands with a budget, as library calls with the CLI's defaults."""
    from ldlm.autoencoder.train import AutoencoderTrainArgs, train_autoencoder
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset
    from ldlm.train import TrainArgs, train_diffusion

    opts = a.ldlm
    spent = Spent(work / "ldlm_budget.json")
    rows = load_texts(str(paths["train"]))
    cond_rows = load_texts(str(paths["train_csv"]), condition_column="topic") if a.conditional else rows
    ae_dir = a.autoencoder or work / "ldlm" / "autoencoder"
    share = opts.get("ae_share", AE_SHARE)
    config, args = split_autoencoder_options(opts.get("autoencoder", {}))
    if a.autoencoder is None:
        spent.run("autoencoder", lambda: train_autoencoder(rows, ae_dir, config, AutoencoderTrainArgs(**{
            "max_minutes": share * a.budget / 60, "budget_clock": "cpu", **args}), Ticker()))
    store, run = work / "ldlm" / "train.zarr", work / "ldlm" / "run"
    spent.run("encode", lambda: encode_dataset(cond_rows, ae_dir, store,
                                               condition_column="topic" if a.conditional else None))
    adapt_share = opts.get("adapt_share", ADAPT_SHARE) if "adapt" in opts else 0.0
    left = a.budget * (1 - adapt_share) - spent.cpu
    if left < 0.1 * a.budget and "train" not in spent.stages:
        raise SystemExit(f"the autoencoder and encode stages used {spent.cpu:.0f} of the {a.budget:g} "
                         "CPU-seconds, leaving the denoiser less than a tenth; raise --budget")
    spent.run("train", lambda: train_diffusion(store, run, TrainArgs(**{
        "max_minutes": left / 60, "budget_clock": "cpu", "conditional": a.conditional,
        **opts.get("train", {})}), Ticker()))
    if "adapt" in opts:  # adapt-decoder as the last stage, within the same budget ({}: its defaults)
        from ldlm.adapt import AdaptArgs, adapt_decoder

        left = a.budget - spent.cpu
        spent.run("adapt", lambda: adapt_decoder(run, work / "ldlm" / "adapted", AdaptArgs(**{
            "max_minutes": left / 60, "budget_clock": "cpu", **opts["adapt"]}), autoencoder=ae_dir,
            reporter=Ticker()))


def ldlm_autoencoder_dir(a, work: Path) -> Path:
    if "adapt" in a.ldlm:
        return work / "ldlm" / "adapted"
    return Path(a.autoencoder or work / "ldlm" / "autoencoder")


def ldlm_parameters(a, work: Path, paths: dict[str, Path]) -> dict:
    """What ldlm trains, counted on the trained models, or on untrained ones of the same
    recipe when the GPT-2 starts first (side by side)."""
    from ldlm.autoencoder import load_autoencoder
    from ldlm.autoencoder.train import build_autoencoder
    from ldlm.denoisers import build_denoiser, denoiser_config
    from ldlm.train import TrainArgs

    ae_dir = Path(a.autoencoder or work / "ldlm" / "autoencoder")
    if (ae_dir / "config.json").exists():
        ae = load_autoencoder(ae_dir)
    else:
        ae = build_autoencoder(split_autoencoder_options(a.ldlm.get("autoencoder", {}))[0],
                               lines(paths["train"]))
    if ae.config.freeze_encoder:
        ae.encoder.requires_grad_(False)
    targs = TrainArgs(**{k: v for k, v in a.ldlm.get("train", {}).items() if k != "max_steps"})
    denoiser = build_denoiser(targs.arch, denoiser_config(targs.arch, ae.latent_shape, targs.size,
                                                          targs.self_condition, **targs.denoiser))
    trained = count_parameters(ae, trainable_only=ae.config.freeze_encoder) + count_parameters(denoiser)
    frozen = count_parameters(ae) - count_parameters(ae, trainable_only=True)
    return {"trained": trained, "frozen_encoder": frozen, "denoiser": count_parameters(denoiser),
            "encoder_source": ae.config.encoder_source}


def generate_ldlm(a, work: Path, seed: int, control: bool = False, guidance: float | None = None) -> dict:
    """`ldlm sample RUN --num-samples N --seed SEED | ldlm decode --seed SEED` at the defaults
    (or the --ldlm overrides), from the trained models in `work`; `control`: the decoder fed
    random latents of the store's statistics instead; `guidance`: N / 4 samples of each topic,
    `--condition TOPIC --guidance-scale guidance`."""
    from ldlm.autoencoder import load_autoencoder
    from ldlm.decode import DecodeArgs, decode_latents
    from ldlm.latent_file import LatentSource
    from ldlm.sample import SamplingArgs, sample_latents
    from ldlm.store import LatentStore

    ae = load_autoencoder(ldlm_autoencoder_dir(a, work))
    start = time.perf_counter()
    wanted = None
    if guidance is not None:  # class-conditional: num_samples / 4 per topic at this guidance scale
        from ldlm.sample import Conditions

        per = a.num_samples // len(TOPICS)
        latents, _ = sample_latents(work / "ldlm" / "run", SamplingArgs(**{
            "num_samples": per, "seed": seed, **a.ldlm.get("sample", {})}),
            conditions=Conditions(TOPICS, guidance), device="cpu")
        wanted = [t for t in TOPICS for _ in range(per)]
    elif control:
        mean, std = LatentStore.open(str(work / "ldlm" / "train.zarr")).stats()
        gen = np.random.default_rng(seed)
        latents = (gen.standard_normal((a.num_samples, *mean.shape)) * std + mean).astype(np.float32)
    else:
        latents, _ = sample_latents(work / "ldlm" / "run", SamplingArgs(**{
            "num_samples": a.num_samples, "seed": seed, **a.ldlm.get("sample", {})}), device="cpu")
    source = LatentSource("samples", ae.fingerprint, ae.latent_shape, None, iter([(latents, None)]),
                          len(latents))
    args = DecodeArgs(**{"seed": seed, **a.ldlm.get("decode", {})})
    texts = [r["text"].replace("\n", " ") for r in decode_latents(source, ae, args)]
    return {"texts": texts, "seconds": time.perf_counter() - start, "topics": wanted}


# ----- GPT-2 --------------------------------------------------------------------------------
def ar_model(target: int, tok):
    """The GPT-2 shape (width a multiple of 32, 4 heads, 2-8 layers) closest to `target` params."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab, best = len(tok), None
    for n_embd in range(64, 769, 32):
        for n_layer in range(2, 9):
            # embeddings + blocks + final LN (head tied): 12 d^2 + 13 d per block
            n = vocab * n_embd + 128 * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, n_embd, n_layer)
    cfg = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=best[1], n_layer=best[2], n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg)


def ar_sequences(tok, texts: list[str], prefix: list[list[int]], n_positions: int) -> list[list[int]]:
    """`bos, *prefix, *text, eos` token ids, the text cut so that each fits n_positions (a
    topic token takes one position from the text)."""
    return [[tok.bos_token_id, *p, *tok(t, add_special_tokens=False)["input_ids"][:n_positions - 2 - len(p)],
             tok.eos_token_id] for p, t in zip(prefix, texts, strict=True)]


AR_CHECKPOINT = "ar_checkpoint.json"  # marks a whole checkpoint of the GPT-2's training


def train_ar(a, paths: dict[str, Path], work: Path) -> None:
    """GPT-2 on the same texts for the same CPU time, on ldlm's training loop (its AdamW, warmup
    and cosine to 10%, clipping, and the pace that plans the steps to end with the budget).

    Its training keeps checkpoints in WORKDIR/ar-train (weights, optimiser, schedule, RNG, the
    CPU-seconds spent, the tokenizer): a rerun after an interruption resumes from the last one
    instead of starting again, and the budget counts the time of every part of the run."""
    from transformers import AutoTokenizer

    from ldlm.autoencoder.tokenizer import pad_rows, train_tokenizer
    from ldlm.autoencoder.train import length_grouped_batches
    from ldlm.checkpoints import list_checkpoints
    from ldlm.loop import LoopArgs, Steps, TrainingLoop

    out, train_dir = work / "ar", work / "ar-train"
    if (out / "config.json").exists():
        return
    start, wall = time.process_time(), time.perf_counter()
    found = list_checkpoints(train_dir, AR_CHECKPOINT) if train_dir.exists() else []
    saved = json.loads((found[-1] / AR_CHECKPOINT).read_text()) if found else None
    params = ldlm_parameters(a, work, paths)
    texts = lines(paths["train"])
    if saved is not None:  # the tokenizer the checkpoint was trained with
        tok = AutoTokenizer.from_pretrained(found[-1] / "tokenizer")
    else:
        tok = train_tokenizer(texts, 4096)  # the recipe and size of ldlm's decoder tokenizer
        if a.conditional:  # "<topic> text": one new token per topic, the prompt at sampling
            tok.add_special_tokens({"additional_special_tokens": [f"<{t}>" for t in TOPICS]})
    prefix = [[]] * len(texts)
    if a.conditional:
        prefix = [[tok.convert_tokens_to_ids(f"<{t}>")] for t in topics(paths["train_csv"])]
    torch.manual_seed(0)  # the initial weights too: a run and its resumed twin start alike
    model = ar_model(params["trained"], tok)
    ids = ar_sequences(tok, texts, prefix, model.config.n_positions)
    batches = length_grouped_batches([len(x) for x in ids], 64, random.Random(0))
    setup = saved["setup_cpu_s"] if saved else time.process_time() - start  # counted once, not per resume
    loop = TrainingLoop(model, LoopArgs(
        max_steps=a.ar_max_steps or 10**9,  # smoke runs and tests: a step cap besides the budget
        max_seconds=a.budget - setup, clock="cpu",  # what the set-up left
        learning_rate=1e-3, warmup_steps=100, schedule="cosine-floor", min_lr_ratio=0.1,
        weight_decay=0.01, max_grad_norm=1.0, cpu=True))
    done = 0
    losses = list(saved["losses"]) if saved else []
    if saved is not None:
        loop.load_checkpoint(found[-1])  # weights, optimiser, schedule, RNG, the CPU-seconds spent
        done = int(saved["step"])
        for _ in range(done):  # the data order goes on where the checkpoint stopped
            next(batches)
        print(f"ar: resuming from {found[-1]} (step {done})", flush=True)

    def gpt2_loss(x, mask):
        return loop.model(input_ids=x, attention_mask=mask, labels=x.masked_fill(mask == 0, -100)).loss

    def step(done: int) -> float:
        x, mask = pad_rows([ids[j] for j in next(batches)], tok.pad_token_id)
        losses.append(loop.step(gpt2_loss, x, mask).item())
        return losses[-1]

    def log(done: int, loss: float, over: bool) -> None:
        if done % 200 == 0:
            print(f"ar step {done} loss {np.mean(losses[-200:]):.3f}", flush=True)

    def checkpoint(done: int) -> None:
        record = {"setup_cpu_s": setup, "losses": losses[-200:], "budget": a.budget}
        loop.save_checkpoint(train_dir, done, AR_CHECKPOINT, record, 2,
                             lambda tmp: tok.save_pretrained(tmp / "tokenizer"))

    model.train()
    steps = loop.run(Steps(step, "gpt2", after_step=log, checkpoint=checkpoint,
                           checkpointing_steps=a.ar_checkpointing_steps), start=done, saved=done or None)
    budget = {"cpu_s": round(setup + loop.clock.spent(), 1),  # every part of the run, resumed or not
              "wall_s": round(time.perf_counter() - wall, 1), "steps": steps,
              "params": count_parameters(model), "ldlm_params": params,
              "final_loss": round(float(np.mean(losses[-100:])), 4),
              "resumed_from_step": done or None}
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (work / "ar_budget.json").write_text(json.dumps(budget, indent=2))


def generate_ar(a, work: Path, seed: int, top_p: float) -> dict:
    """N texts from the trained GPT-2 in `work` (temperature 1, top-p `top_p`), torch seed `seed`."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(work / "ar").eval()
    tok = AutoTokenizer.from_pretrained(work / "ar")
    torch.manual_seed(seed)
    limit = max(len(tok(t)["input_ids"]) for t in lines(work / "data" / "refs.txt")[:2000]) + 8
    wanted = [t for t in TOPICS for _ in range(a.num_samples // len(TOPICS))] if a.conditional else None
    prompts = [[tok.bos_token_id] + ([tok.convert_tokens_to_ids(f"<{t}>")] if wanted else [])
               for t in (wanted or [None] * a.num_samples)]
    start, texts = time.perf_counter(), []
    with torch.inference_mode():
        for i in range(0, len(prompts), 250):
            prompt = torch.tensor(prompts[i:i + 250])
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                 temperature=1.0, top_p=top_p, top_k=0, max_new_tokens=limit,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            texts += [t.strip().replace("\n", " ") for t in tok.batch_decode(out, skip_special_tokens=True)]
    return {"texts": texts, "seconds": time.perf_counter() - start, "topics": wanted}


# ----- sampling seeds, caches and scoring ----------------------------------------------------
NAMES = {"ldlm": "ldlm (defaults)", "control": "ldlm control (random latents)",
         "gpt2": "GPT-2 (temperature 1)", "gpt2_top_p": "GPT-2 (top-p {p:g})", "human": "human"}


def sampling_seeds(a) -> list[int]:
    """The sampling seeds: --sample-seed, and the next --sampling-seeds - 1 integers."""
    return [a.sample_seed + i for i in range(a.sampling_seeds)]


def mauve_draws(a, seed: int) -> list[int]:
    """MAUVE's own draws for the texts of one sampling seed (the yardstick subset, the human
    row's texts, the k-means seed): new for each sampling seed, the same for every system."""
    return [100 * seed + j for j in range(a.seeds)]


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a killed run leaves the old file or none, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def drawn(folder: Path, key: str, seed: int, n: int, generate) -> dict:
    """One system's N texts at one sampling seed: `generate(seed)` once, then read from
    folder/samples (so an interrupted comparison resumes where it stopped)."""
    path = folder / "samples" / f"{key}-n{n}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    out = {**generate(seed), "seed": seed}
    write_json(path, out)
    return out


def scored(folder: Path, key: str, seed: int, texts: list[str], a, pools: dict, reference_row: bool):
    """`evaluate_texts` of one system's texts at one sampling seed over that seed's MAUVE draws,
    cached in folder/scores beside what it was computed from."""
    import hashlib

    from ldlm.evaluate import Evaluation, evaluate_texts

    stamp = {"n": a.num_samples, "draws": mauve_draws(a, seed), "reference_row": reference_row,
             "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    path = folder / "scores" / f"{key}-n{a.num_samples}-seed{seed}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["stamp"] == stamp:
            return Evaluation.from_dict(saved["evaluation"])
    ev = evaluate_texts(texts, references=pools["refs"], train_texts=pools["train"],
                        human_texts=pools["human"], num_samples=a.num_samples, seeds=stamp["draws"],
                        reference_row=reference_row, feature_cache=pools["features"])
    write_json(path, {"stamp": stamp, "evaluation": ev.as_dict()})
    return ev


def unconditional_systems(a, work: Path, ar_work: Path) -> dict:
    """key -> (the folder its samples and scores live in, generate(seed)); the human row is
    ldlm's evaluation's reference row, so it has no entry here."""
    systems = {"ldlm": (work, lambda seed: generate_ldlm(a, work, seed))}
    if not a.no_control:
        systems["control"] = (work, lambda seed: generate_ldlm(a, work, seed, control=True))
    if not a.no_ar:
        systems["gpt2"] = (ar_work, lambda seed: generate_ar(a, ar_work, seed, 1.0))
        if a.gpt2_top_p is not None:
            systems["gpt2_top_p"] = (ar_work, lambda seed: generate_ar(a, ar_work, seed, a.gpt2_top_p))
    return systems


def cache_key(a, key: str) -> str:
    return f"gpt2-top-p{a.gpt2_top_p:g}" if key == "gpt2_top_p" else key


def system_facts(a, work: Path, ar_work: Path, paths: dict[str, Path]) -> dict:
    """reconstruction_bleu, params and cpu_s of each system (None where not meaningful): the
    control is the autoencoder alone (what it trained on, and the encode that gave its
    statistics); the human row costs nothing."""
    from ldlm.autoencoder import load_autoencoder

    ae_dir = ldlm_autoencoder_dir(a, work)
    bleu, params = None, {}
    if (ae_dir / "config.json").exists():
        rec = load_autoencoder(ae_dir).config.extra.get("reconstruction") or {}
        bleu = rec.get("bleu")
        params = ldlm_parameters(a, work, paths)
    spent = Spent(work / "ldlm_budget.json")
    ar = json.loads((ar_work / "ar_budget.json").read_text()) if (ar_work / "ar_budget.json").exists() else {}
    ae_cpu = sum(spent.stages[k]["cpu_s"] for k in ("autoencoder", "encode") if k in spent.stages)
    trained = params.get("trained")
    return {
        "ldlm": {"reconstruction_bleu": bleu, "params": trained,
                 "cpu_s": spent.cpu if spent.stages else None},
        "control": {"reconstruction_bleu": None,
                    "params": None if trained is None else trained - params["denoiser"],
                    "cpu_s": ae_cpu or None},
        "gpt2": {"reconstruction_bleu": None, "params": ar.get("params"), "cpu_s": ar.get("cpu_s")},
        "gpt2_top_p": {"reconstruction_bleu": None, "params": ar.get("params"), "cpu_s": ar.get("cpu_s")},
        "human": {"reconstruction_bleu": None, "params": None, "cpu_s": None},
    }


def results(a, evals: dict, samples: dict, facts: dict) -> dict:
    """The comparison as JSON: per system one MAUVE per sampling seed (each the mean over that
    seed's MAUVE draws), and Div, Mem, copy rate, the training texts' 3-gram perplexity and ms per
    sample as means over the seeds."""
    systems = {}
    for key, per_seed in evals.items():
        row = "reference" if key == "human" else "model"

        def mean(metric, row=row, per_seed=per_seed):
            values = [ev.summary(row, metric)[0] for ev in per_seed if ev.summary(row, metric) is not None]
            return float(np.mean(values)) if values else None

        ms = [1000 * s["seconds"] / len(s["texts"]) for s in samples.get(key, [])]
        systems[key] = {"mauve": [ev.summary(row, "mauve")[0] if ev.summary(row, "mauve") else None
                                  for ev in per_seed],
                        "div": mean("diversity"), "mem": mean("mem_4gram"), "copy": mean("copy_rate"),
                        "lm_ppl": mean("train_lm_ppl"),
                        "reconstruction_bleu": facts[key]["reconstruction_bleu"],
                        "ms_per_sample": float(np.mean(ms)) if ms else None,
                        "params": facts[key]["params"], "cpu_s": facts[key]["cpu_s"]}
    return {"corpus": a.corpus, "budget_cpu_s": a.budget, "split": a.split, "n": a.num_samples,
            "systems": systems}


def results_path(a, work: Path) -> Path | None:
    """Where the JSON goes besides WORKDIR/compare.json: --results, or for a headline run (no
    --ldlm override, no reused autoencoder) benchmarks/results/compare-CORPUS[-dev]-BUDGET.json."""
    if a.results is not None:
        return a.results
    if a.overrides or a.autoencoder is not None:
        return None
    split = "" if a.split == "test" else f"-{a.split}"
    return ROOT / "benchmarks" / "results" / f"compare-{a.corpus}{split}-{a.budget:g}.json"


def table(a, evals: dict, samples: dict, out: dict) -> str:
    """Markdown: MAUVE as mean ± std over the sampling seeds, the other metrics as means."""
    from ldlm.evaluate.registry import DIGITS, LABELS

    keys = list(evals)
    names = [NAMES[k].format(p=a.gpt2_top_p or 0) for k in keys]
    rows = ["| metric | " + " | ".join(names) + " |", "|" + "---|" * (len(keys) + 1)]
    seeds = len(sampling_seeds(a))
    for metric, label in LABELS.items():
        cells = []
        for k in keys:
            row = "reference" if k == "human" else "model"
            values = [ev.summary(row, metric)[0] for ev in evals[k] if ev.summary(row, metric) is not None]
            if not values:
                cells.append("-")
            elif metric == "mauve":
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                cells.append(f"{np.mean(values):.3f} ± {std:.3f}")
            else:
                cells.append(f"{np.mean(values):.{DIGITS[metric]}f}")
        if any(c != "-" for c in cells):
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows.append("| generation ms / sample | " + " | ".join(
        "-" if out["systems"][k]["ms_per_sample"] is None else f"{out['systems'][k]['ms_per_sample']:.1f}"
        for k in keys) + " |")
    notes = [f"N = {a.num_samples} texts per system and sampling seed; {seeds} sampling seeds "
             f"({', '.join(map(str, sampling_seeds(a)))}); MAUVE: mean ± std over the sampling seeds of "
             f"each seed's mean over {a.seeds} MAUVE draws (yardstick subset and k-means seed)",
             *(f"{k}: MAUVE per sampling seed " + ", ".join(
                 "-" if m is None else f"{m:.3f}" for m in out["systems"][k]["mauve"]) for k in keys),
             *(f"{k}: " + json.dumps({f: v for f, v in out["systems"][k].items()
                                      if f in ("reconstruction_bleu", "params", "cpu_s")}) for k in keys)]
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def compare(a, work: Path, ar_work: Path, paths: dict[str, Path], systems: dict | None = None) -> dict:
    """Draw every system's texts at each sampling seed (cached), score them (cached), write
    WORKDIR/table.md, WORKDIR/scores.json, WORKDIR/compare.json and the results file; return
    the JSON. `systems`: key -> (folder, generate(seed)), default `unconditional_systems`."""
    pools = {"train": lines(paths["train"]), "refs": lines(paths["refs"]),
             "human": lines(paths["human"]) if "human" in paths else None, "features": {}}
    systems = systems or unconditional_systems(a, work, ar_work)
    evals = {k: [] for k in systems} | {"human": []}
    samples = {k: [] for k in systems}
    for seed in sampling_seeds(a):
        for key, (folder, generate) in systems.items():
            s = drawn(folder, cache_key(a, key), seed, a.num_samples, generate)
            ev = scored(folder, cache_key(a, key), seed, s["texts"], a, pools, reference_row=key == "ldlm")
            samples[key].append(s)
            evals[key].append(ev)
            if key == "ldlm":  # its reference row: held-out human texts drawn with this seed's draws
                evals["human"].append(ev)
            print(f"seed {seed} {key}: {ev}", flush=True)
    out = results(a, evals, samples, system_facts(a, work, ar_work, paths))
    text = table(a, evals, samples, out)
    (work / "table.md").write_text(text)
    write_json(work / "scores.json", {
        "results": {k: [ev.as_dict() for ev in per_seed] for k, per_seed in evals.items()},
        "sampling_seeds": sampling_seeds(a), "ldlm_budget": Spent(work / "ldlm_budget.json").stages,
        "samples": {k: {"seed": s[0]["seed"], "texts": s[0]["texts"][:SHOWN]} for k, s in samples.items()}})
    write_json(work / "compare.json", out)
    target = results_path(a, work)
    if target is not None:
        write_json(target, out)
    print(text, flush=True)
    return out


def score_by_topic(a, work: Path, paths: dict[str, Path], samples: dict) -> str:
    """Per topic: MAUVE against the topic's references and against the other topics', class
    accuracy under an n-gram topic classifier trained on the training split (`ldlm
    train-classifier` on ldlm's store: train rows only), Div, Mem, copy; the human row is the
    held-out train rows of each topic (never trained on), scored the same way."""
    from ldlm.classifier import ClassifierArgs, train_classifier
    from ldlm.evaluate import CLASS_LABELS, evaluate_classes, load_topic_classifier

    clf_dir = work / "topic_classifier"
    if not (clf_dir / "config.json").exists():
        train_classifier(work / "ldlm" / "train.zarr", clf_dir, ClassifierArgs(eval_rows=0, lm_order=0))
    clf = load_topic_classifier(str(clf_dir))
    refs, ref_topics = lines(paths["refs"]), topics(paths["refs_csv"])
    per = a.num_samples // len(TOPICS)
    rows = dict(samples)
    if "human" in paths:  # the test split: held-out train rows of each topic, never trained on
        human = {"texts": [], "topics": [], "seconds": 0.0}
        for text, topic in zip(lines(paths["human"]), topics(paths["human_csv"]), strict=True):
            if human["topics"].count(topic) < per:
                human["texts"].append(text)
                human["topics"].append(topic)
        rows["human (held-out train rows)"] = human
    results = {}
    for name, s in rows.items():
        results[name] = evaluate_classes(s["texts"], s["topics"], refs, ref_topics, lines(paths["train"]),
                                         classifier=clf, num_samples=per, seeds=a.seeds, reference_row=False)
        print(name, results[name], flush=True)
    keys = ["mauve", "mauve_other", "accuracy", "diversity", "mem_4gram", "copy_rate", "words"]

    def cell(ev, cls, key):
        m = ev.summary(cls, "model", key)
        return "-" if m is None else f"{m[0]:.{1 if key == 'words' else 3}f}"

    def table(cls):
        head = ["system", *(CLASS_LABELS[k] for k in keys), "ms / sample"]
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, ev in results.items():
            ms = 1000 * rows[name]["seconds"] / len(rows[name]["texts"]) if rows[name]["seconds"] else None
            out.append(f"| {name} | " + " | ".join(cell(ev, cls, k) for k in keys)
                       + f" | {'-' if ms is None else f'{ms:.1f}'} |")
        return "\n".join(out)

    ceiling = next(iter(results.values())).ceiling
    text = (f"Mean over the four topics (N = {per} per topic, {a.seeds} seeds; classifier accuracy on "
            f"the references, the ceiling: {json.dumps(ceiling)})\n\n{table(None)}\n")
    for cls in TOPICS:
        text += f"\n{cls}\n\n{table(cls)}\n"
    ldlm_spent = Spent(work / "ldlm_budget.json")
    ar = json.loads((work / "ar_budget.json").read_text()) if (work / "ar_budget.json").exists() else {}
    text += (f"\n- ldlm CPU-s: {json.dumps(ldlm_spent.stages)} = {ldlm_spent.cpu:.0f}\n"
             f"- GPT-2: {json.dumps({k: v for k, v in ar.items() if k != 'ldlm_params'})}\n"
             f"- parameters: {json.dumps(ar.get('ldlm_params'))}\n")
    (work / "table.md").write_text(text)
    (work / "scores.json").write_text(json.dumps(
        {"results": {n: ev.as_dict() for n, ev in results.items()}, "ldlm_budget": ldlm_spent.stages,
         "ar_budget": ar, "samples": {n: {t: [x for x, c in zip(s["texts"], s["topics"], strict=True)
                                              if c == t][:5] for t in TOPICS} for n, s in rows.items()}},
        indent=1, ensure_ascii=False))
    return text


class Ticker:
    """A Reporter that prints a line every 200 units, so a log shows progress."""

    def start(self, description, total=None, unit="it"):
        self.what, self.total, self.n = description, total, 0

    def advance(self, n=1, **fields):
        self.n += n
        if self.n % 200 < n:
            print(f"{self.what} {self.n}/{self.total} {fields}", flush=True)

    def set_total(self, total):
        self.total = total

    def stop(self):
        pass

    def log(self, message):
        print(message, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", choices=["e2e", "ag_news"], required=True)
    p.add_argument("--split", choices=["test", "dev"], default="test")
    p.add_argument("--budget", type=float, default=1800.0, help="CPU-seconds per system")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--system", choices=["all", "ldlm", "ar"], default="all",
                   help="train one system only (to run both side by side), or all and score")
    p.add_argument("--num-samples", type=int, default=1000, help="N: texts per system and sampling seed")
    p.add_argument("--sampling-seeds", type=int, default=5,
                   help="texts drawn per system with seeds --sample-seed, --sample-seed + 1, ...")
    p.add_argument("--seeds", type=int, default=3, help="MAUVE's own draws per sampling seed")
    p.add_argument("--sample-seed", type=int, default=1, help="the first sampling seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=DATA, help="the folder holding e2e/ and ag_news/")
    p.add_argument("--autoencoder", type=Path, default=None, help="reuse this autoencoder (fixed-AE runs)")
    p.add_argument("--ldlm", type=json.loads, default={}, help="option overrides (ablations)")
    p.add_argument("--ar-checkpointing-steps", type=int, default=200,
                   help="a checkpoint of the GPT-2's training every N steps (a rerun resumes from the last)")
    p.add_argument("--no-ar", action="store_true", help="score ldlm alone (no GPT-2 row)")
    p.add_argument("--no-control", action="store_true",
                   help="no control row (a sampling-time lever on a run whose control is scored elsewhere)")
    p.add_argument("--ar-workdir", type=Path, default=None,
                   help="take the GPT-2 row (model, samples, scores) from this WORKDIR of the same corpus, "
                        "split and budget, trained there first: dev ablations read against one dev GPT-2")
    p.add_argument("--ar-max-steps", type=int, default=None,
                   help="stop the GPT-2 at this many steps even if budget is left (smoke runs, tests)")
    p.add_argument("--gpt2-top-p", type=float, default=None,
                   help="also draw the GPT-2 with this top-p (system gpt2_top_p)")
    p.add_argument("--results", type=Path, default=None,
                   help="the JSON file (default: benchmarks/results/compare-CORPUS[-dev]-BUDGET.json for a "
                        "run with no --ldlm and no --autoencoder; WORKDIR/compare.json always)")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional (ag_news): ldlm --conditional and a GPT-2 on '<topic> text', "
                        "scored per topic, ldlm at each guidance scale of GUIDANCE (first sampling seed "
                        "only)")
    return p


def check_ar_workdir(a, ar_work: Path) -> None:
    """--ar-workdir must hold a trained GPT-2 of the same corpus, split and budget."""
    args = ar_work / "args.json"
    if not (ar_work / "ar" / "config.json").exists() or not args.exists():
        raise SystemExit(f"--ar-workdir {ar_work} holds no trained GPT-2; run the comparison there first "
                         "(e.g. the dev headline: --split dev with no --ldlm)")
    theirs = json.loads(args.read_text())
    for key in ("corpus", "split", "budget", "conditional"):
        if theirs.get(key) != getattr(a, key):
            raise SystemExit(f"--ar-workdir {ar_work} was run with {key}={theirs.get(key)!r}, this run with "
                             f"{getattr(a, key)!r}; its GPT-2 row is not this comparison's")


def main(argv: list[str] | None = None) -> dict | None:
    p = parser()
    a = p.parse_args(argv)
    if a.conditional and a.corpus != "ag_news":
        p.error("--conditional needs a labelled corpus: --corpus ag_news")
    if a.sampling_seeds < 1 or a.seeds < 1:
        p.error("--sampling-seeds and --seeds must be at least 1")
    if a.ar_workdir is not None and a.no_ar:
        p.error("--ar-workdir names a GPT-2 row that --no-ar drops; give one of them")
    torch.set_num_threads(a.threads)
    kind = "-conditional" if a.conditional else ""
    work = a.workdir or ROOT / ".bench" / f"compare-{a.corpus}{kind}-{a.split}-{a.budget:g}"
    work.mkdir(parents=True, exist_ok=True)
    a.overrides, a.ldlm = a.ldlm, ldlm_recipe(a.ldlm)
    ar_work = a.ar_workdir or work
    if a.ar_workdir is not None:
        check_ar_workdir(a, ar_work)
    (work / "args.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                                for k, v in vars(a).items()}, indent=1))
    paths = prepare(a.corpus, a.split, work, a.data)
    if a.system in ("all", "ldlm"):
        train_ldlm(a, paths, work)
    if a.system in ("all", "ar") and not a.no_ar:
        train_ar(a, paths, ar_work)
    if a.system != "all":
        return None
    if not a.conditional:
        return compare(a, work, ar_work, paths)
    systems = [(f"ldlm-guidance-{w:g}", f"ldlm (guidance {w:g})",
                lambda seed, w=w: generate_ldlm(a, work, seed, guidance=w)) for w in GUIDANCE]
    if not a.no_ar:
        systems += [("gpt2", "GPT-2 (temperature 1)", lambda seed: generate_ar(a, ar_work, seed, 1.0)),
                    ("gpt2-top-p0.9", "GPT-2 (top-p 0.9)", lambda seed: generate_ar(a, ar_work, seed, 0.9))]
    samples = {name: drawn(ar_work if key.startswith("gpt2") else work, key, a.sample_seed, a.num_samples, fn)
               for key, name, fn in systems}
    print(score_by_topic(a, work, paths, samples))
    return None


if __name__ == "__main__":
    main()
