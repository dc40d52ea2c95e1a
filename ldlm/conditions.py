"""Conditions: what a conditional run generates text about, and how it is encoded.

A condition is a class label or a conditioning text (E2E's meaning representation). The
spec is built once from the training column at encode time, stored in the store's
attributes, copied into the run, and used again by `sample` to encode user conditions:

    label: a categorical vocabulary; a condition is its index (N,), the learned null
           condition is index `len(labels)`.
    text:  a token vocabulary (0 <pad>, 1 <null>, 2 <unk>, then the tokens by frequency);
           a condition is `max_length` token ids (N, L), padded with 0. A structured text
           `key[value], key[value], ...` (E2E's MRs) has one token per `key[value]` slot
           (79 in E2E train, all of dev/test's among them); any other text is split into
           words and punctuation. The null condition
           is the single token <null>. The tokens are embedded and encoded by a small
           transformer inside the denoiser, trained jointly with it. (Measured on E2E: the
           autoencoder's own latents of an MR keep only part of its slot values, because
           the autoencoder was trained on references, not MRs; see the README.)

Classifier-free guidance (Ho & Salimans 2022): the denoiser is trained with the condition
replaced by the null condition with probability `condition_dropout`; at sampling,
out = uncond + W * (cond - uncond), cond and uncond in one batched forward (`Guided`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from ldlm.errors import InputError
from ldlm.mbr import FLUENCY_WEIGHT, RERANKER_WEIGHT, mbr_pick, mbr_scores  # mbr_pick re-exported

ConditionType = Literal["label", "text"]
PAD, NULL, UNK = 0, 1, 2
SPECIALS = ["<pad>", "<null>", "<unk>"]
MAX_TEXT_TOKENS = 128  # condition texts longer than this are truncated
MAX_LABELS = 1000  # more distinct values than this is not a label column: use --condition-type text
_WORD = re.compile(r"\w+|[^\w\s]")
_SLOT = re.compile(r"\s*([^,\[\]]+?)\s*\[([^\]]*)\]\s*")
_SLOTS = re.compile(r"(?:\s*[^,\[\]]+?\s*\[[^\]]*\]\s*)(?:,(?:\s*[^,\[\]]+?\s*\[[^\]]*\]\s*))*")


def tokenize_condition(text: str) -> list[str]:
    """'name[The Eagle], food[Thai]' -> ['name[The Eagle]', 'food[Thai]'] (one token per slot);
    other texts -> words and single punctuation marks."""
    if _SLOTS.fullmatch(text):
        return [f"{k}[{v.strip()}]" for k, v in _SLOT.findall(text)]
    return _WORD.findall(text)


@dataclass
class ConditionSpec:
    """The condition vocabulary of a store and of the runs trained on it."""

    type: ConditionType  # label | text
    column: str  # the dataset column the conditions came from
    labels: list[str] = field(default_factory=list)  # label: the classes, in index order
    vocab: list[str] = field(default_factory=list)  # text: the token vocabulary (specials first)
    max_length: int = 0  # text: tokens per condition

    # ----- building and (de)serialising ------------------------------------------------
    @classmethod
    def build(cls, values: list[str], column: str, type: str = "label") -> ConditionSpec:
        """The spec of a training column: sorted labels, or a word vocabulary by frequency."""
        if type not in ("label", "text"):
            raise InputError(f"--condition-type {type!r} is not one of label, text")
        if not values:
            raise InputError(f"condition column {column!r} has no values")
        if type == "label":
            labels = sorted(set(values))
            if len(labels) > MAX_LABELS:
                raise InputError(
                    f"condition column {column!r} has {len(labels)} distinct values, more than "
                    f"{MAX_LABELS} labels; pass --condition-type text for conditioning texts"
                )
            return cls("label", column, labels=labels)
        counts: Counter = Counter()
        longest = 1
        for v in values:
            tokens = tokenize_condition(v)
            counts.update(tokens)
            longest = max(longest, len(tokens))
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return cls("text", column, vocab=SPECIALS + words, max_length=min(longest, MAX_TEXT_TOKENS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConditionSpec:
        return cls(d["type"], d["column"], list(d.get("labels") or []), list(d.get("vocab") or []),
                   int(d.get("max_length") or 0))

    # ----- sizes ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Label: classes without the null one; text: the token vocabulary size."""
        return len(self.labels) if self.type == "label" else len(self.vocab)

    def model_options(self) -> dict:
        """The denoiser constructor arguments this spec needs."""
        if self.type == "label":
            return {"condition_type": "label", "condition_classes": len(self.labels)}
        return {"condition_type": "text", "condition_classes": len(self.vocab),
                "condition_length": self.max_length}

    # ----- encoding ---------------------------------------------------------------------
    def encode(self, values: list[str], strict: bool = True) -> np.ndarray:
        """Label: indices (n,) int32; text: token ids (n, max_length) int32.

        strict: an unknown label is an InputError (sample); text has <unk> for unknown words.
        """
        if self.type == "label":
            index = {v: i for i, v in enumerate(self.labels)}
            out = np.empty(len(values), np.int32)
            for i, v in enumerate(values):
                if v not in index:
                    shown = ", ".join(self.labels[:10]) + (", ..." if len(self.labels) > 10 else "")
                    raise InputError(f"unknown condition label {v!r}; the run knows {len(self.labels)} "
                                     f"labels: {shown}")
                out[i] = index[v]
            return out
        index = {w: i for i, w in enumerate(self.vocab)}
        out = np.zeros((len(values), self.max_length), np.int32)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise InputError(f"condition number {i + 1} is empty; give a non-empty condition text")
            ids = [index.get(w, UNK) for w in tokenize_condition(v)][: self.max_length]
            out[i, : len(ids)] = ids
        return out

    def null(self, n: int) -> np.ndarray:
        """n null conditions, shaped like `encode`'s output."""
        if self.type == "label":
            return np.full(n, len(self.labels), np.int32)
        out = np.zeros((n, self.max_length), np.int32)
        out[:, 0] = NULL
        return out

    def unknown_fraction(self, values: list[str]) -> float:
        """Text: the fraction of condition tokens outside the vocabulary (for warnings)."""
        if self.type == "label":
            return 0.0
        vocab = set(self.vocab)
        tokens = [w for v in values for w in tokenize_condition(v)]
        return sum(w not in vocab for w in tokens) / max(1, len(tokens))


def drop_conditions(cond: torch.Tensor, null: torch.Tensor, p: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Replace each row of `cond` (B,) or (B, L) by `null` (one row) with probability p."""
    if p <= 0:
        return cond
    drop = torch.rand(cond.shape[0], generator=generator) < p  # (B,)
    drop = drop.to(cond.device).reshape(-1, *([1] * (cond.ndim - 1)))
    return torch.where(drop, null.to(cond.device).expand_as(cond), cond)


def check_guidance_scale(scale: float) -> None:
    if not math.isfinite(scale) or scale < 0:
        raise InputError(f"--guidance-scale {scale} must be a finite number >= 0 (0: unconditional, "
                         "1: plain conditional, > 1: stronger guidance)")


class ConditionedDenoiser(nn.Module):
    """The denoiser with a fixed condition batch, called as the objective calls a denoiser:
    model(x_t, t, self_cond=None). Used for the training loss and for sampling."""

    def __init__(self, model: nn.Module, cond: torch.Tensor):
        super().__init__()
        self.model, self.cond = model, cond

    def forward(self, x_t, t, self_cond=None):
        return self.model(x_t, t, self_cond=self_cond, cond=self.cond)


class Guided(nn.Module):
    """Classifier-free guidance around a conditional denoiser:
    out = uncond + W * (cond - uncond), with cond and uncond rows in one forward.
    W = 0 runs only the null condition and W = 1 only the condition (the same bits as
    unconditional and plain conditional sampling)."""

    def __init__(self, model: nn.Module, cond: torch.Tensor, null: torch.Tensor, scale: float):
        super().__init__()
        check_guidance_scale(scale)
        self.model, self.cond, self.null, self.scale = model, cond, null, float(scale)

    def forward(self, x_t, t, self_cond=None):
        if self.scale == 0:
            return self.model(x_t, t, self_cond=self_cond, cond=self.null)
        if self.scale == 1:
            return self.model(x_t, t, self_cond=self_cond, cond=self.cond)
        n = x_t.shape[0]
        both = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                          self_cond=None if self_cond is None else torch.cat([self_cond, self_cond]),
                          cond=torch.cat([self.cond, self.null]))
        c, u = both[:n], both[n:]
        return u + self.scale * (c - u)


def read_condition_file(path) -> list[str]:
    """Conditions, one per line (blank lines skipped)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--condition-file {str(path)!r} does not exist; give a file with one "
                         "condition per line")
    values = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not values:
        raise InputError(f"--condition-file {str(path)!r} holds no condition; put one per line")
    return values


# ----- runs -------------------------------------------------------------------------------
def run_condition_spec(meta: dict, run_path) -> ConditionSpec | None:
    """The condition spec a run was trained with (ldlm_run.json), or None if unconditional."""
    spec = meta.get("condition")
    return ConditionSpec.from_dict(spec) if spec else None


def encode_for_run(meta: dict, run_path, values: list[str]) -> np.ndarray:
    """Encode user conditions for a run; one-line errors for an unconditional run or an
    unknown label."""
    spec = run_condition_spec(meta, run_path)
    if spec is None:
        raise InputError(f"run {str(run_path)!r} is unconditional (trained without --conditional), so it "
                         "takes no --condition/--condition-file; drop them or train with --conditional")
    if not values:
        raise InputError("no condition given; pass --condition VALUE or --condition-file FILE")
    return spec.encode(list(values))


def guided(model: nn.Module, conditions: np.ndarray, scale: float, device) -> nn.Module:
    """`model` guided towards `conditions` (n,) or (n, L) with scale W (see Guided)."""
    cond = torch.from_numpy(np.asarray(conditions)).long().to(device)
    null = model.null_condition(cond.shape[0], device)
    return Guided(model, cond, null, scale)


def slot_values(condition: str) -> list[str]:
    """The values of a structured condition: 'name[The Eagle], food[Thai]' -> ['The Eagle', 'Thai'];
    [] for any other text."""
    if not _SLOTS.fullmatch(condition):
        return []
    return [v.strip() for _, v in _SLOT.findall(condition) if v.strip()]


def _mentions(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, flags=re.IGNORECASE) is not None


def slot_errors(text: str, condition: str, known: set[str]) -> int:
    """How far a text strays from a structured condition: the condition's values it does not
    state, plus the other `known` values (of the run's slot vocabulary) it states anyway."""
    own = {v.lower() for v in slot_values(condition)}
    missing = sum(not _mentions(text, v) for v in own)
    extra = sum(_mentions(text, v) for v in known - own)
    return missing + extra


def known_slot_values(spec: ConditionSpec) -> set[str]:
    """Every slot value of a text spec's vocabulary, lower-cased (empty for labels or words)."""
    return {v.lower() for token in spec.vocab for v in slot_values(token)}


def rerank_slot_values(meta: dict, run_path, mbr: int | None) -> set[str]:
    """The known slot values `--rerank-slots` checks candidates against; InputError when the
    run's conditions are not structured texts or no --mbr candidates are drawn."""
    spec = run_condition_spec(meta, run_path)
    known = known_slot_values(spec) if spec is not None else set()
    if not mbr or not known:
        raise InputError("--rerank-slots needs --mbr N and a run conditioned on structured texts "
                         "(key[value], ... such as E2E's MRs); add --mbr or drop --rerank-slots")
    return known


def check_reranker(reranker, meta: dict, run_path, mbr: int | None, weight: float,
                   fluency_weight: float = 0.0) -> None:
    """--reranker needs --mbr candidates, finite weights >= 0, a classifier of the run's own
    condition vocabulary, and its language model where --fluency-weight is above 0."""
    if not mbr:
        raise InputError("--reranker chooses among --mbr candidates; add --mbr N (e.g. 40) or drop "
                         "--reranker")
    if not math.isfinite(weight) or weight < 0:
        raise InputError(f"--reranker-weight {weight} must be a finite number >= 0 (0: MBR alone)")
    if not math.isfinite(fluency_weight) or fluency_weight < 0:
        raise InputError(f"--fluency-weight {fluency_weight} must be a finite number >= 0 (0: no "
                         "fluency term)")
    if fluency_weight > 0 and reranker.language_model is None:
        raise InputError(f"--fluency-weight {fluency_weight} needs the classifier's language model, "
                         "and this --reranker has none (trained with --lm-order 0?); retrain it "
                         "with `ldlm train-classifier` or pass --fluency-weight 0")
    spec = run_condition_spec(meta, run_path)
    if spec is None or reranker.spec.to_dict() != spec.to_dict():
        raise InputError(f"the --reranker classifier was trained on conditions of column "
                         f"{reranker.spec.column!r} with another vocabulary than run "
                         f"{str(run_path)!r}'s; train one on the run's store with `ldlm "
                         "train-classifier STORE --out DIR`")


def iter_conditional(run, values: list[str], num_samples: int = 1, guidance_scale: float = 1.0,
                     num_inference_steps: int = 50, scheduler: str = "ddim", seed: int = 42,
                     batch_size: int | None = None, device="cpu", reporter=None, mbr: int | None = None,
                     autoencoder=None, max_new_tokens: int = 100, rerank_slots: bool = False,
                     noise_scale: float = 1.0, reranker=None, reranker_weight: float = RERANKER_WEIGHT,
                     fluency_weight: float = FLUENCY_WEIGHT):
    """Yield (latents (b, k, d), meta) for `num_samples` samples of each condition in `values`,
    row i * num_samples + j being sample j of condition i; meta rows are {"condition": value}.

    mbr N: draw N candidates per sample, decode them greedily with the run's autoencoder (or
    `autoencoder`, a LatentAutoencoder or a path) and keep the one with the highest mean BLEU
    against the others; meta then also holds its text ("mbr_text").
    rerank_slots (with mbr, structured conditions `key[value], ...`): first keep the candidates
    with the fewest `slot_errors` (values missing, other known values stated), then the MBR
    choice among them, as E2E systems rerank their beams (TGen's slot-error reranker).
    reranker (with mbr): a ConditionClassifier (ldlm.classifier) of the run's conditions; the
    choice maximises MBR score + reranker_weight * log p(condition | candidate text) instead of
    the MBR score alone (TGen's classifier reranking of its beam, on MBR's candidates).
    fluency_weight (with reranker): adds fluency_weight * log p(candidate) per word under the
    classifier's language model of the store's texts (ldlm.fluency); with the classifier term
    this is a noisy-channel reranker.
    noise_scale: multiplies the starting noise (ldlm.diffusion.Diffusion.sample); on E2E, 0 to
    0.3 with guidance 1 gave far higher BLEU than 1 (benchmarks/README.md).
    """
    from ldlm.progress import SILENT
    from ldlm.sample import iter_samples

    check_guidance_scale(guidance_scale)
    if mbr is not None and mbr < 1:
        raise InputError(f"--mbr {mbr} must be at least 1 (candidates per sample)")
    conds = encode_for_run(run.meta, run.path, values)  # (n_cond,) or (n_cond, L)
    known = rerank_slot_values(run.meta, run.path, mbr) if rerank_slots else set()
    if reranker is not None:
        check_reranker(reranker, run.meta, run.path, mbr, reranker_weight, fluency_weight)
    draws = num_samples * (mbr or 1)
    model = None
    if mbr:
        from ldlm.autoencoder import LatentAutoencoder
        from ldlm.variations import run_autoencoder

        model = autoencoder if isinstance(autoencoder, LatentAutoencoder) else run_autoencoder(
            run, autoencoder, device)
    expanded = np.repeat(conds, draws, axis=0)
    rows = [v for v in values for _ in range(num_samples)]
    batch = batch_size or min(len(expanded), 256)
    if mbr:  # whole candidate groups per batch
        batch = max(mbr, batch // mbr * mbr)
    frames = iter_samples(run, len(expanded), num_inference_steps, scheduler, seed, batch, device,
                          reporter or SILENT, conditions=expanded, guidance_scale=guidance_scale,
                          noise_scale=noise_scale)
    done = drawn = 0  # output rows yielded, candidate rows drawn
    for x in frames:
        if not mbr:
            yield x, [{"condition": v} for v in rows[done:done + len(x)]]
            done += len(x)
            continue
        texts = model.generate(torch.from_numpy(x), max_new_tokens=max_new_tokens, temperature=0.0)
        fit = None if reranker is None else reranker_weight * reranker.log_likelihood(
            texts, expanded[drawn:drawn + len(x)])  # (b,)
        if fit is not None and fluency_weight:
            fit = fit + fluency_weight * reranker.fluency(texts)
        drawn += len(x)
        keep, meta = [], []
        for g in range(0, len(x), mbr):
            group = list(range(g, g + mbr))
            if known:  # the candidates closest to the condition, then MBR among them
                errors = [slot_errors(texts[i], rows[done], known) for i in group]
                group = [i for i, e in zip(group, errors, strict=True) if e == min(errors)]
            score = mbr_scores([texts[i] for i in group])
            if fit is not None:
                score = score + fit[group]
            best = group[int(np.argmax(score))]  # the first best on ties, as mbr_pick
            keep.append(best)
            meta.append({"condition": rows[done], "mbr_text": texts[best], "mbr_candidates": mbr})
            done += 1
        yield x[keep], meta


__all__ = ["ConditionSpec", "Guided", "ConditionedDenoiser", "drop_conditions", "check_guidance_scale",
           "read_condition_file", "tokenize_condition", "run_condition_spec", "encode_for_run", "guided",
           "mbr_pick", "iter_conditional", "slot_values", "slot_errors", "known_slot_values",
           "rerank_slot_values", "check_reranker",
           "PAD", "NULL", "UNK"]
