"""Stage: latents (a store, a latent file or a stream on stdin) -> texts.

The latents name their latent space; decode refuses latents from another autoencoder and,
when no autoencoder is given, loads the one the latents name if it exists here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ldlm.args import DecodeArgs
from ldlm.autoencoder import LatentAutoencoder, load_autoencoder_for
from ldlm.latent_file import LatentSource, open_latents  # open_latents re-exported (README)
from ldlm.progress import SILENT, Reporter


def resolve_autoencoder(source: LatentSource, autoencoder: str | None,
                        device: str | None = None) -> LatentAutoencoder:
    """Load the autoencoder for `source` (`autoencoder`, else the one it names), checking that
    the latent spaces agree."""
    return load_autoencoder_for(source.latent_space, source.latent_shape, source.autoencoder, autoencoder,
                                f"the latents in {source.name}", True, "made them", device)


_OWN = ("index", "text")  # record keys that row metadata cannot set


def _rebatch(frames, size: int):
    buf: list[np.ndarray] = []
    meta: list[dict | None] = []
    for x, m in frames:
        for i in range(x.shape[0]):
            buf.append(x[i])
            meta.append(m[i] if m else None)
            if len(buf) == size:
                yield np.stack(buf), meta
                buf, meta = [], []
    if buf:
        yield np.stack(buf), meta


def _generate(model: LatentAutoencoder, latents: torch.Tensor, args: DecodeArgs,
              temperature: float) -> list[str]:
    """One text per latent; with best_of n, the likeliest of n sampled texts under the decoder."""
    n = args.best_of
    repeated = latents.repeat_interleave(n, dim=0) if n > 1 else latents
    texts = model.generate(repeated, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                           temperature=temperature, top_p=args.top_p)
    if n == 1:
        return texts
    score = model.text_logprob(repeated, texts).reshape(-1, n)  # (b, n)
    best = score.argmax(1).tolist()
    return [texts[i * n + j] for i, j in enumerate(best)]


def decode_latents(
    source: LatentSource,
    model: LatentAutoencoder,
    args: DecodeArgs | None = None,
    reporter: Reporter = SILENT,
) -> Iterator[dict]:
    """Yield one record per latent, in order: {"index", "text", ...row metadata}; the index and
    the decoded text are ldlm's own, whatever the latents' metadata holds."""
    args = args or DecodeArgs()
    args.check()
    model.check_max_new_tokens(args.max_new_tokens)  # before the first latent is read
    torch.manual_seed(args.seed)
    temperature = 0.0 if args.num_beams > 1 else args.temperature
    reporter.start("decode", total=source.rows, unit="texts")
    index = 0
    for latents, meta in _rebatch(source.frames, args.batch_size):
        texts = _generate(model, torch.from_numpy(latents), args, temperature)
        for text, m in zip(texts, meta, strict=True):
            yield {"index": index, "text": text, **{k: v for k, v in (m or {}).items() if k not in _OWN}}
            index += 1
        reporter.advance(len(texts))
    reporter.stop()


__all__ = ["DecodeArgs", "LatentSource", "decode_latents", "open_latents", "resolve_autoencoder"]
