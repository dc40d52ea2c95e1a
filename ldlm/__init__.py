"""ldlm: latent diffusion language models."""

__version__ = "0.1.0"
