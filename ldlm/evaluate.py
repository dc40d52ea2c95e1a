"""Score generated texts the way the field reports them: MAUVE, diversity, distinct-n,
memorisation and copies of training texts, generative perplexity, paired BLEU, latent
Frechet distance; N samples against N references, repeated over seeds, beside a row of
held-out human texts scored the same way.

The implementation lives in `ldlm.metrics` (n-gram metrics, BLEU, Frechet distance) and
`ldlm.evaluation` (model-based metrics, the protocol, reading inputs); this module gathers
the public names.
"""

from ldlm.evaluation.models import (
    MINILM,
    load_feature_model,
    mauve_from_features,
    mauve_score,
    perplexity,
    text_features,
    text_nll,
)
from ldlm.evaluation.protocol import LABELS, Evaluation, evaluate_texts
from ldlm.metrics import (
    TOKENIZATIONS,
    corpus_bleu,
    distinct_n,
    diversity,
    frechet_distance,
    memorisation,
    tokenize,
)

__all__ = [
    "LABELS", "MINILM", "TOKENIZATIONS", "Evaluation", "corpus_bleu", "distinct_n", "diversity",
    "evaluate_texts", "frechet_distance", "load_feature_model", "mauve_from_features", "mauve_score",
    "memorisation", "perplexity", "text_features", "text_nll", "tokenize",
]
