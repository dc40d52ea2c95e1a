"""Condition classifiers: what a generated text says about its condition.

A conditional run samples latents for a condition, and the decoder writes them out; whether
the text states the condition is not checked anywhere along the way. A condition classifier
reads the text and scores log p(condition | text), so that `ldlm sample --mbr N --reranker
CLF` keeps the candidate that both agrees with the others (MBR) and states its condition, as
TGen reranks its beam with a classifier of the dialogue act its outputs express.

The model is a bag of word n-grams (1 to `ngram_order`, each counted once per text) and one
linear layer, the log-linear classifier of fastText / logistic regression:

    label conditions: softmax over the classes;
    text conditions:  one sigmoid per condition token (E2E: one per `key[value]` slot), so
                      log p(condition | text) = sum over tokens of log p(token in or out).

It trains in about a minute on a CPU from a latent store's `text` and `condition` arrays
(the store `ldlm train --conditional` reads; no autoencoder), holding out rows spread over
the store and stratified by class (ldlm.holdout) for the figures it reports. Beside it, the
same texts train a word trigram language model (ldlm.fluency), p(text), so that the reranker
can also prefer the candidates that read like the training texts: log p(condition | text) +
log p(text) is the noisy-channel score.
Saved in `save_pretrained` layout: `config.json` (with the condition vocabulary, checked
against a run before reranking), the weights as safetensors, the n-gram vocabulary in
`ngrams.json` and the language model's counts in `fluency_lm.json`.

Python API:
    train_classifier(store, out, ClassifierArgs()) -> ClassifierResult
    ConditionClassifier.from_pretrained(path).log_likelihood(texts, conditions)
    ConditionClassifier.from_pretrained(path).fluency(texts)  # nats per token
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from ldlm.args import ClassifierArgs
from ldlm.conditions import SPECIALS, ConditionSpec
from ldlm.errors import InputError, LdlmError, RuntimeFailure, first_line
from ldlm.fluency import NgramLM
from ldlm.loop import LoopArgs, Steps, TrainingLoop
from ldlm.metrics import tokenize
from ldlm.progress import SILENT, Reporter

NGRAMS_FILE = "ngrams.json"
FLUENCY_FILE = "fluency_lm.json"  # the word n-gram language model of the same texts
CLASSIFIER_FILE = "ldlm_classifier.json"  # what made it: store, rows, held-out figures, options


# ----- features ---------------------------------------------------------------------------
def text_ngrams(text: str, order: int) -> set[str]:
    """The distinct lower-cased word n-grams (1..order) of a text, words joined by spaces."""
    words = tokenize(text, "words")  # the tokens of `ldlm evaluate`
    return {" ".join(words[i:i + n]) for n in range(1, order + 1) for i in range(len(words) - n + 1)}


def build_ngram_vocab(texts: list[str], order: int, min_count: int, max_size: int) -> list[str]:
    """The n-grams found in at least `min_count` texts, most frequent first, at most `max_size`."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(text_ngrams(text, order))
    kept = sorted((g for g, c in counts.items() if c >= min_count), key=lambda g: (-counts[g], g))
    return kept[:max_size]


def bag(texts: list[str], index: dict[str, int], order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EmbeddingBag inputs: the known n-gram ids of all texts (flat) and each text's offset."""
    ids, offsets = [], []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(sorted(index[g] for g in text_ngrams(text, order) if g in index))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


# ----- the model --------------------------------------------------------------------------
class ConditionClassifier(ModelMixin, ConfigMixin):
    """texts -> condition logits: (B, classes) for labels, (B, vocab) per token for text conditions."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        condition: dict | None = None,  # the ConditionSpec (to_dict) of the store it was trained on
        num_ngrams: int = 1,  # size of the n-gram vocabulary (ngrams.json)
        ngram_order: int = 3,  # word n-grams 1..order
    ):
        super().__init__()
        if not condition:
            raise InputError("a ConditionClassifier needs the condition spec of its store "
                             "(ConditionSpec.to_dict()); train one with `ldlm train-classifier`")
        spec = ConditionSpec.from_dict(condition)
        outputs = len(spec.labels) if spec.type == "label" else len(spec.vocab)
        self.weight = nn.EmbeddingBag(num_ngrams, outputs, mode="sum")  # one row of logits per n-gram
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(outputs))
        self.ngrams: list[str] = []  # set by from_pretrained / train_classifier
        self._index: dict[str, int] | None = None
        self.language_model: NgramLM | None = None  # p(text), set likewise where there is one

    @property
    def spec(self) -> ConditionSpec:
        return ConditionSpec.from_dict(self.config.condition)

    def set_ngrams(self, ngrams: list[str]) -> None:
        if len(ngrams) != self.config.num_ngrams:
            raise RuntimeFailure(f"the n-gram vocabulary has {len(ngrams)} entries, the weights "
                                 f"{self.config.num_ngrams}; the classifier is damaged, retrain it")
        self.ngrams, self._index = list(ngrams), {g: i for i, g in enumerate(ngrams)}

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        # ids (n-grams of all texts), offsets (B,) -> logits (B, outputs)
        return self.weight(ids, offsets) + self.bias

    def bag(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The EmbeddingBag inputs of `texts` under this classifier's n-grams."""
        return bag(texts, self._index or {}, self.config.ngram_order)

    def logits(self, texts: list[str]) -> torch.Tensor:
        ids, offsets = self.bag(texts)
        dev = self.bias.device
        return self(ids.to(dev), offsets.to(dev))

    @torch.no_grad()
    def log_likelihood(self, texts: list[str], conditions: np.ndarray) -> np.ndarray:
        """log p(condition | text) of each text (n,), conditions encoded by the spec: label
        indices (n,) or token ids (n, L)."""
        logits = self.logits(texts).float()  # (n, outputs)
        cond = torch.as_tensor(np.asarray(conditions), dtype=torch.long, device=logits.device)
        if self.spec.type == "label":
            return F.log_softmax(logits, -1).gather(1, cond[:, None])[:, 0].cpu().numpy()
        target = token_targets(cond, logits.shape[1])  # (n, V)
        ll = torch.where(target > 0, F.logsigmoid(logits), F.logsigmoid(-logits))
        return ll[:, len(SPECIALS):].sum(1).cpu().numpy()

    def fluency(self, texts: list[str]) -> np.ndarray:
        """log p(text) per token (n,) under the language model of the classifier's training texts."""
        if self.language_model is None:
            raise InputError("this classifier has no language model (fluency_lm.json), so it cannot "
                             "score fluency; retrain it with `ldlm train-classifier` or pass "
                             "--fluency-weight 0")
        return self.language_model.mean_log_prob(texts)

    # ----- persistence: the weights and config by diffusers, the n-grams beside them ----
    def save_pretrained(self, save_directory, **kwargs) -> None:
        super().save_pretrained(save_directory, **kwargs)
        (Path(save_directory) / NGRAMS_FILE).write_text(json.dumps(self.ngrams, ensure_ascii=False))
        if self.language_model is not None:
            (Path(save_directory) / FLUENCY_FILE).write_text(
                json.dumps(self.language_model.to_dict(), ensure_ascii=False))

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> ConditionClassifier:
        folder = Path(path)
        if not (folder / cls.config_name).is_file():
            from ldlm.files import check_no_loop

            check_no_loop(folder, "classifier")
            raise InputError(f"classifier {str(path)!r} does not exist or holds no {cls.config_name}; "
                             "give the --out folder of `ldlm train-classifier`")
        from ldlm.files import read_json

        owner, fix = f"classifier {str(path)!r}", "retrain it with `ldlm train-classifier`"
        read_json(folder / cls.config_name, owner, fix)  # a list or a torn file: one line, not diffusers'
        try:
            model = super().from_pretrained(str(folder), **kwargs)
            model.set_ngrams(read_json(folder / NGRAMS_FILE, owner, fix, list))
            if (folder / FLUENCY_FILE).is_file():  # none with --lm-order 0
                model.language_model = NgramLM.from_dict(read_json(folder / FLUENCY_FILE, owner, fix))
        except LdlmError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise RuntimeFailure(f"classifier {str(path)!r} is damaged ({first_line(exc)}); {fix}") from exc
        return model.eval()


def read_classifier_record(path: str | Path) -> dict:
    """The checked ldlm_classifier.json of a classifier folder (what made it, its held-out figures)."""
    from ldlm.files import read_json

    record = read_json(Path(path) / CLASSIFIER_FILE, f"classifier {str(path)!r}",
                       "retrain it with `ldlm train-classifier`")
    for key in ("train_rows", "eval_rows"):
        if not isinstance(record.get(key), int | None) or isinstance(record.get(key), bool):
            raise RuntimeFailure(f"classifier {str(path)!r} has a damaged {CLASSIFIER_FILE} (field {key} is "
                                 f"{record.get(key)!r}, not a row count); retrain it with `ldlm "
                                 "train-classifier`")
    for key in ("accuracy", "precision", "recall", "perplexity"):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RuntimeFailure(f"classifier {str(path)!r} has a damaged {CLASSIFIER_FILE} (field {key} is "
                                 f"{value!r}, not a number); retrain it with `ldlm train-classifier`")
    if not isinstance(record.get("training"), dict | None):
        raise RuntimeFailure(f"classifier {str(path)!r} has a damaged {CLASSIFIER_FILE} (field training is "
                             "not a JSON object); retrain it with `ldlm train-classifier`")
    return record


def token_targets(cond: torch.Tensor, vocab: int) -> torch.Tensor:
    """Token ids (B, L) -> multi-hot (B, vocab) of the tokens present (specials cleared)."""
    target = torch.zeros(cond.shape[0], vocab, device=cond.device)
    target.scatter_(1, cond, 1.0)
    target[:, : len(SPECIALS)] = 0
    return target


# ----- training ---------------------------------------------------------------------------
@dataclass
class ClassifierResult:
    out: Path
    model: ConditionClassifier
    train_rows: int
    eval_rows: int
    accuracy: float | None  # held-out: labels right (label), conditions with every token right (text)
    precision: float | None  # text conditions: held-out token precision at p > 0.5
    recall: float | None  # text conditions: held-out token recall at p > 0.5
    seconds: float
    perplexity: float | None = None  # the fluency model's, per token on the held-out texts
    warning: str | None = None  # what makes the figures say little (a store of one class)


def _targets(spec: ConditionSpec, cond: np.ndarray, outputs: int) -> torch.Tensor:
    cond_t = torch.as_tensor(cond, dtype=torch.long)
    return cond_t if spec.type == "label" else token_targets(cond_t, outputs)


def _classifier_loss(model: ConditionClassifier, spec: ConditionSpec, ids: torch.Tensor,
                     offsets: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _loss(spec, model(ids, offsets), target)


def _loss(spec: ConditionSpec, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if spec.type == "label":
        return F.cross_entropy(logits, target)
    skip = len(SPECIALS)
    total = F.binary_cross_entropy_with_logits(logits[:, skip:], target[:, skip:], reduction="sum")
    return total / len(logits)  # summed over the tokens, averaged over the texts


@torch.no_grad()
def _held_out_figures(model: ConditionClassifier, texts: list[str], cond: np.ndarray):
    """(accuracy, precision, recall) on held-out rows (precision and recall: text conditions)."""
    if not texts:
        return None, None, None
    logits = model.logits(texts)
    if model.spec.type == "label":
        return float((logits.argmax(1).numpy() == cond).mean()), None, None
    skip = len(SPECIALS)
    target = token_targets(torch.as_tensor(cond, dtype=torch.long), logits.shape[1])[:, skip:] > 0
    pred = logits[:, skip:] > 0
    hit = float((pred & target).sum())
    return (float((pred == target).all(1).float().mean()), hit / max(1.0, float(pred.sum())),
            hit / max(1.0, float(target.sum())))


def train_classifier(store: str | Path, out: str | Path, args: ClassifierArgs | None = None,
                     reporter: Reporter = SILENT, overwrite: bool = False) -> ClassifierResult:
    """Train a condition classifier on a store's texts and conditions and save it to `out`
    (written whole or not at all)."""
    from ldlm.atomic import atomic_directory, check_output_path
    from ldlm.holdout import classes, holdout, holdout_rows
    from ldlm.store import LatentStore

    args = args or ClassifierArgs()
    args.check()
    out = Path(out)
    check_output_path(out, "--out", folder=True)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {str(out)!r} exists and is not empty; pass --overwrite to replace it "
                         "or give another folder")
    opened = LatentStore.open(store)
    spec_dict = opened.attrs.get("condition")
    if not spec_dict:
        raise InputError(f"store {opened.path!r} has no conditions; encode it with `ldlm encode "
                         "--condition-column COL` to train a condition classifier")
    spec = ConditionSpec.from_dict(spec_dict)
    started = time.perf_counter()
    all_texts = opened.read_texts()
    all_cond = np.asarray(opened.read_conditions())
    # held-out rows spread over the store, by class for labels (a class-sorted store's last rows
    # are one class); the training rows first, then the held-out ones
    train_idx, held_idx = holdout(len(all_texts), holdout_rows(len(all_texts), args.eval_rows), "spaced",
                                  all_cond if spec.type == "label" else None)
    arranged = train_idx + held_idx
    texts, cond = [all_texts[i] for i in arranged], all_cond[arranged]
    n, held = len(train_idx), len(held_idx)
    warning = None
    if classes(cond[:n]) < 2:
        warning = (f"warning: every training row of store {opened.path!r} has the same condition: the "
                   "classifier learns nothing about conditions and its held-out figures say nothing; "
                   "encode a store with two classes or more to rerank by condition")
    ngrams = build_ngram_vocab(texts[:n], args.ngram_order, args.min_count, args.max_ngrams)
    if not ngrams:
        raise InputError(f"no word n-gram occurs in {args.min_count} training texts of store "
                         f"{opened.path!r}; lower --min-count")
    torch.manual_seed(args.seed)
    model = ConditionClassifier(condition=spec.to_dict(), num_ngrams=len(ngrams),
                                ngram_order=args.ngram_order)
    model.set_ngrams(ngrams)
    # the n-gram ids of every training text, built once
    bags = [model.bag([t])[0] for t in texts[:n]]
    targets = _targets(spec, cond[:n], model.bias.shape[0])
    steps_per_epoch = max(1, n // args.batch_size)
    total = args.epochs * steps_per_epoch
    # AdamW at a constant rate, the decoupled decay on the n-gram weights only (not the bias)
    groups = [{"params": [model.weight.weight], "weight_decay": args.weight_decay},
              {"params": [model.bias], "weight_decay": 0.0}]
    loop = TrainingLoop(model, LoopArgs(max_steps=total, learning_rate=args.learning_rate,
                                        schedule="constant", max_grad_norm=None, cpu=True), groups)
    rng = np.random.default_rng(args.seed)
    order = np.arange(n)

    def train_step(done: int) -> float:
        nonlocal order
        s = done % steps_per_epoch
        if s == 0:  # each epoch visits the training rows in a new order
            order = rng.permutation(n)
        idx = order[s * args.batch_size:(s + 1) * args.batch_size]
        lengths = torch.tensor([len(bags[i]) for i in idx])
        offsets = torch.cumsum(lengths, 0) - lengths
        return loop.step(_classifier_loss, model, spec, torch.cat([bags[i] for i in idx]), offsets,
                         targets[idx]).item()

    loop.run(Steps(train_step, "train-classifier", shown=lambda loss: round(loss, 4),
                   diverged=lambda value, done: RuntimeFailure(f"loss became {value}; lower --learning-rate "
                                                               f"({args.learning_rate})")), reporter)
    model.eval()
    accuracy, precision, recall = _held_out_figures(model, texts[n:], cond[n:])
    perplexity = None
    if args.lm_order:
        model.language_model = NgramLM.fit(texts[:n], order=args.lm_order)
        if held:
            perplexity = model.language_model.perplexity(texts[n:])
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)
        (tmp / CLASSIFIER_FILE).write_text(json.dumps({
            "store": opened.path, "latent_space": opened.latent_space, "train_rows": n,
            "eval_rows": held, "accuracy": accuracy, "precision": precision, "recall": recall,
            "perplexity": perplexity, "training": asdict(args)}, indent=2))
    return ClassifierResult(out, model, n, held, accuracy, precision, recall,
                            time.perf_counter() - started, perplexity, warning)


__all__ = ["ConditionClassifier", "ClassifierArgs", "ClassifierResult", "read_classifier_record",
           "train_classifier", "text_ngrams", "build_ngram_vocab"]
