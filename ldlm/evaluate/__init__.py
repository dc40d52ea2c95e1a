"""Score generated texts the way the field reports them: MAUVE, diversity, distinct-n,
memorisation and copies of training texts, generative perplexity, paired BLEU, latent
Frechet distance; N samples against N references, repeated over seeds, beside a row of
held-out human texts scored the same way. Class-conditional texts are scored per class
(`by_class`: own- and other-class MAUVE, class accuracy under a topic classifier).

The n-gram metrics, BLEU and the Frechet distance live in `ldlm.metrics` (the stages use
them too); this package holds the model-based metrics (`models`), what each metric needs
(`registry`: METRICS and READINGS), the protocol (`protocol`: the Evaluator and
`evaluate_texts`), its per-class use (`by_class`), and `ldlm evaluate` as a library function
with the readers of what it scores (`inputs`); it gathers the public names here.
"""

from ldlm.evaluate.by_class import (
    CLASS_LABELS,
    ClassEvaluation,
    NgramTopicClassifier,
    TopicClassifier,
    evaluate_classes,
    load_topic_classifier,
)
from ldlm.evaluate.inputs import Sources, evaluate_sources
from ldlm.evaluate.models import (
    MINILM,
    load_feature_model,
    mauve_from_features,
    mauve_score,
    perplexity,
    text_features,
    text_nll,
)
from ldlm.evaluate.protocol import Evaluation, Evaluator, Group, evaluate_texts
from ldlm.evaluate.registry import LABELS, METRICS, READINGS, Metric, Reading
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
    "CLASS_LABELS", "ClassEvaluation", "LABELS", "METRICS", "MINILM", "Metric", "NgramTopicClassifier",
    "READINGS", "Reading", "Sources", "TOKENIZATIONS", "TopicClassifier", "Evaluation", "Evaluator",
    "Group", "corpus_bleu", "distinct_n", "diversity", "evaluate_classes", "evaluate_sources",
    "evaluate_texts", "frechet_distance", "load_feature_model", "load_topic_classifier",
    "mauve_from_features", "mauve_score", "memorisation", "perplexity", "text_features", "text_nll",
    "tokenize",
]
