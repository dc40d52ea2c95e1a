"""Score generated texts the way the field reports them: MAUVE, diversity, distinct-n,
memorisation and copies of training texts, generative perplexity, paired BLEU, latent
Frechet distance; N samples against N references, repeated over seeds, beside a row of
held-out human texts scored the same way.

The n-gram metrics, BLEU and the Frechet distance live in `ldlm.metrics` (the stages use
them too); this package holds the model-based metrics (`models`), the protocol and its
METRICS registry (`protocol`) and the readers of what `ldlm evaluate` scores (`inputs`), and
gathers the public names here.
"""

from ldlm.evaluate.models import (
    MINILM,
    load_feature_model,
    mauve_from_features,
    mauve_score,
    perplexity,
    text_features,
    text_nll,
)
from ldlm.evaluate.protocol import LABELS, METRICS, Evaluation, Metric, evaluate_texts
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
    "LABELS", "METRICS", "MINILM", "Metric", "TOKENIZATIONS", "Evaluation", "corpus_bleu", "distinct_n",
    "diversity",
    "evaluate_texts", "frechet_distance", "load_feature_model", "mauve_from_features", "mauve_score",
    "memorisation", "perplexity", "text_features", "text_nll", "tokenize",
]
