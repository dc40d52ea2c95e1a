"""ldlm against an autoregressive GPT-2 of the same size and CPU budget, on one corpus.

    python benchmarks/ar_comparison.py --corpus e2e|ag_news [--budget 1800] [--split test|dev]
        [--workdir .bench/compare-e2e-1800] [--system all|ldlm|ar] [--num-samples 1000]
        [--seeds 3] [--autoencoder AE_DIR] [--ldlm JSON]
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
  options (the ablations; the headline runs pass none).
- GPT-2 trained from scratch: the parameter count of everything ldlm trains (encoder,
  compressor, decoder, denoiser; a frozen pretrained encoder is not counted, and is named),
  a byte-level BPE trained the way ldlm's is, AdamW, warmup and cosine to 10%, batch 64,
  length-grouped batches (the same saving ldlm's autoencoder gets), for the same CPU time.
  Sampled with temperature 1 and with top-p 0.9.

Scored by `ldlm.evaluate.evaluate_texts` (MAUVE on all-MiniLM-L6-v2 features over
`--seeds` draws, Div, Mem, copy rate, words per text) beside the human row; ms per sample is
the wall time of generation / N on one thread. Beside ldlm: the control (its decoder fed
random latents with the store's per-dimension mean and std) and the autoencoder's
reconstruction of held-out texts. Every stage is skipped when its artefact exists.
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


def prepare(corpus: str, split: str, work: Path) -> dict[str, Path]:
    """Write the corpus files once: train.txt, refs.txt (and human.txt), one text a line, and
    for a labelled corpus train.csv, refs.csv (and human.csv) with columns text and topic."""
    folder = work / "data"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {f"{key}{ext}": folder / f"{key}{ext}" for key in ("train", "refs", "human")
             for ext in (".txt", ".csv")}
    if not paths["train.txt"].exists():
        texts = corpus_texts(corpus, split)
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
    left = a.budget - spent.cpu
    if left < 0.1 * a.budget and "train" not in spent.stages:
        raise SystemExit(f"the autoencoder and encode stages used {spent.cpu:.0f} of the {a.budget:g} "
                         "CPU-seconds, leaving the denoiser less than a tenth; raise --budget")
    spent.run("train", lambda: train_diffusion(store, run, TrainArgs(**{
        "max_minutes": left / 60, "budget_clock": "cpu", "conditional": a.conditional,
        **opts.get("train", {})}), Ticker()))
    if opts.get("adapt"):  # adapt-decoder as the last stage, within the same budget
        from ldlm.adapt import AdaptArgs, adapt_decoder

        left = a.budget - spent.cpu
        spent.run("adapt", lambda: adapt_decoder(run, work / "ldlm" / "adapted", AdaptArgs(**{
            "max_minutes": left / 60, "budget_clock": "cpu", **opts["adapt"]}), autoencoder=ae_dir,
            reporter=Ticker()))


def ldlm_autoencoder_dir(a, work: Path) -> Path:
    if a.ldlm.get("adapt"):
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


def generate_ldlm(a, work: Path, control: bool = False, guidance: float | None = None) -> dict:
    """`ldlm sample RUN --num-samples N | ldlm decode` at the defaults (or the --ldlm
    overrides); `control`: the decoder fed random latents of the store's statistics instead;
    `guidance`: N / 4 samples of each topic, `--condition TOPIC --guidance-scale guidance`."""
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
            "num_samples": per, "seed": a.sample_seed, **a.ldlm.get("sample", {})}),
            conditions=Conditions(TOPICS, guidance), device="cpu")
        wanted = [t for t in TOPICS for _ in range(per)]
    elif control:
        mean, std = LatentStore.open(str(work / "ldlm" / "train.zarr")).stats()
        gen = np.random.default_rng(a.sample_seed)
        latents = (gen.standard_normal((a.num_samples, *mean.shape)) * std + mean).astype(np.float32)
    else:
        latents, _ = sample_latents(work / "ldlm" / "run", SamplingArgs(**{
            "num_samples": a.num_samples, "seed": a.sample_seed, **a.ldlm.get("sample", {})}), device="cpu")
    source = LatentSource("samples", ae.fingerprint, ae.latent_shape, None, iter([(latents, None)]),
                          len(latents))
    args = DecodeArgs(**{"seed": a.sample_seed, **a.ldlm.get("decode", {})})
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


def train_ar(a, paths: dict[str, Path], work: Path) -> None:
    """GPT-2 on the same texts for the same CPU time."""
    from ldlm.autoencoder.tokenizer import pad_rows, train_tokenizer
    from ldlm.autoencoder.train import length_grouped_batches
    from ldlm.loop import CosineSchedule

    out = work / "ar"
    if (out / "config.json").exists():
        return
    start, wall = time.process_time(), time.perf_counter()
    params = ldlm_parameters(a, work, paths)
    texts = lines(paths["train"])
    tok = train_tokenizer(texts, 4096)  # the recipe and size of ldlm's decoder tokenizer
    prefix = [[]] * len(texts)
    if a.conditional:  # "<topic> text": one new token per topic, the prompt at sampling
        tok.add_special_tokens({"additional_special_tokens": [f"<{t}>" for t in TOPICS]})
        prefix = [[tok.convert_tokens_to_ids(f"<{t}>")] for t in topics(paths["train_csv"])]
    model = ar_model(params["trained"], tok)
    ids = ar_sequences(tok, texts, prefix, model.config.n_positions)
    batches = length_grouped_batches([len(x) for x in ids], 64, random.Random(0))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = CosineSchedule(100, 10**9, 0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    def step() -> float:
        x, mask = pad_rows([ids[j] for j in next(batches)], tok.pad_token_id)
        loss = model(input_ids=x, attention_mask=mask, labels=x.masked_fill(mask == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    model.train()
    losses, steps, mark = [], 0, None
    while time.process_time() - start < a.budget:
        losses.append(step())
        steps += 1
        if steps == 5:
            mark = (steps, time.process_time())
        elif mark and steps % 10 == 0:  # plan the cosine to end with the budget, as ldlm's loop does
            pace = (time.process_time() - mark[1]) / (steps - mark[0])
            schedule.replan(steps, steps + max(0, int((a.budget - (time.process_time() - start)) / pace)))
        if steps % 200 == 0:
            print(f"ar step {steps} loss {np.mean(losses[-200:]):.3f}", flush=True)
    budget = {"cpu_s": round(time.process_time() - start, 1), "wall_s": round(time.perf_counter() - wall, 1),
              "steps": steps, "params": count_parameters(model), "ldlm_params": params,
              "final_loss": round(float(np.mean(losses[-100:])), 4)}
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (work / "ar_budget.json").write_text(json.dumps(budget, indent=2))


def generate_ar(a, work: Path, top_p: float) -> dict:
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(work / "ar").eval()
    tok = AutoTokenizer.from_pretrained(work / "ar")
    torch.manual_seed(a.sample_seed)
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


# ----- scoring ------------------------------------------------------------------------------
def score(a, work: Path, paths: dict[str, Path], samples: dict) -> str:
    """One table: each system beside the human row, mean ± std over the seeds."""
    from ldlm.autoencoder import load_autoencoder
    from ldlm.evaluate import LABELS, evaluate_texts

    train, refs = lines(paths["train"]), lines(paths["refs"])
    human = lines(paths["human"]) if "human" in paths else None
    results = {}
    for name, s in samples.items():
        results[name] = evaluate_texts(s["texts"], references=refs, train_texts=train, human_texts=human,
                                       num_samples=a.num_samples, seeds=a.seeds)
        print(name, results[name], flush=True)
    names = list(results)
    first = results[names[0]]
    head = ["metric", *names, "human"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(ev, row, key):
        m = ev.summary(row, key)
        return "-" if m is None else f"{m[0]:.{1 if key == 'words' else 3}f}" + (
            f" ± {m[1]:.{1 if key == 'words' else 3}f}" if len(ev.seeds) > 1 and key == "mauve" else "")

    for key, label in LABELS.items():
        if first.summary("model", key) is None:
            continue
        rows.append(f"| {label} | " + " | ".join(cell(results[n], "model", key) for n in names)
                    + f" | {cell(first, 'reference', key)} |")
    rows.append("| generation ms / sample | " + " | ".join(
        f"{1000 * samples[n]['seconds'] / len(samples[n]['texts']):.1f}" for n in names) + " | - |")
    ae = load_autoencoder(ldlm_autoencoder_dir(a, work))
    rec = ae.config.extra.get("reconstruction") or {}
    ldlm_spent = Spent(work / "ldlm_budget.json")
    ar = json.loads((work / "ar_budget.json").read_text()) if (work / "ar_budget.json").exists() else {}
    notes = [f"ldlm autoencoder: held-out reconstruction BLEU {rec.get('bleu', float('nan')):.1f}, "
             f"exact match {rec.get('exact_match', float('nan')):.3f} ({rec.get('rows')} texts); "
             f"latents {ae.latent_shape[0]} x {ae.latent_shape[1]}, max length {ae.config.max_length}",
             f"ldlm CPU-s: {json.dumps(ldlm_spent.stages)} = {ldlm_spent.cpu:.0f}",
             f"GPT-2: {json.dumps({k: v for k, v in ar.items() if k != 'ldlm_params'})}",
             f"parameters: {json.dumps(ar.get('ldlm_params'))}"]
    table = "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (work / "table.md").write_text(table)
    (work / "scores.json").write_text(json.dumps(
        {"results": {n: results[n].as_dict() for n in names}, "ldlm_budget": ldlm_spent.stages,
         "ar_budget": ar, "reconstruction": rec,
         "samples": {n: samples[n]["texts"][:SHOWN] for n in names},
         "ms_per_sample": {n: 1000 * samples[n]["seconds"] / len(samples[n]["texts"]) for n in names}},
        indent=1, ensure_ascii=False))
    return table


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", choices=["e2e", "ag_news"], required=True)
    p.add_argument("--split", choices=["test", "dev"], default="test")
    p.add_argument("--budget", type=float, default=1800.0, help="CPU-seconds per system")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--system", choices=["all", "ldlm", "ar"], default="all",
                   help="train one system only (to run both side by side), or all and score")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sample-seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--autoencoder", type=Path, default=None, help="reuse this autoencoder (fixed-AE runs)")
    p.add_argument("--ldlm", type=json.loads, default={}, help="option overrides (ablations)")
    p.add_argument("--no-ar", action="store_true", help="score ldlm alone (dev ablations)")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional (ag_news): ldlm --conditional and a GPT-2 on '<topic> text', "
                        "scored per topic, ldlm at each guidance scale of GUIDANCE")
    a = p.parse_args()
    if a.conditional and a.corpus != "ag_news":
        p.error("--conditional needs a labelled corpus: --corpus ag_news")
    torch.set_num_threads(a.threads)
    kind = "-conditional" if a.conditional else ""
    work = a.workdir or ROOT / ".bench" / f"compare-{a.corpus}{kind}-{a.split}-{a.budget:g}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "args.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                                for k, v in vars(a).items()}, indent=1))
    paths = prepare(a.corpus, a.split, work)
    if a.system in ("all", "ldlm"):
        train_ldlm(a, paths, work)
    if a.system in ("all", "ar") and not a.no_ar:
        train_ar(a, paths, work)
    if a.system != "all":
        return
    samples_file = work / "samples.json"
    samples = json.loads(samples_file.read_text()) if samples_file.exists() else {}
    systems = [("ldlm", lambda: generate_ldlm(a, work)),
               ("ldlm control (random latents)", lambda: generate_ldlm(a, work, control=True))]
    if a.conditional:
        systems = [(f"ldlm (guidance {w:g})", lambda w=w: generate_ldlm(a, work, guidance=w))
                   for w in GUIDANCE]
    if not a.no_ar:
        systems += [("GPT-2 (temperature 1)", lambda: generate_ar(a, work, 1.0)),
                    ("GPT-2 (top-p 0.9)", lambda: generate_ar(a, work, 0.9))]
    for name, fn in systems:
        if name not in samples:
            samples[name] = fn()
            samples_file.write_text(json.dumps(samples, indent=1, ensure_ascii=False))
    print(score_by_topic(a, work, paths, samples) if a.conditional else score(a, work, paths, samples))


if __name__ == "__main__":
    main()
