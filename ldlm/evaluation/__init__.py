"""Evaluation of generated text: n-gram metrics (ldlm.metrics), model-based metrics
(models.py: features, MAUVE, perplexity) and the repeated-draw protocol (protocol.py).
The public names are gathered in `ldlm.evaluate`."""
