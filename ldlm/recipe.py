"""The recipe: the defaults that a user gets from a command without the flag, where the
library and the command line both need them.

Each value here is a measured choice (benchmarks/README.md says where it was measured);
the library's argument classes and the command line's options both read it from here, so a
default is written once. This module imports nothing heavy: the command line reads it at
start-up.
"""

SIZES = ("tiny", "small", "base")  # --size presets of every model ldlm builds from scratch

# ----- how long each trainer runs without --max-steps or --max-minutes -----------------------
AE_STEPS = 3000  # ldlm train-autoencoder optimiser steps
EPOCHS = 100  # ldlm train: passes over the training rows (without --num-epochs)
ADAPT_STEPS = 1000  # ldlm adapt-decoder optimiser steps

# ----- ldlm train: the optimiser (the seed design's batch 16, lr 1e-4, warmup 500 trained far
# slower per CPU-second: benchmarks/README.md, "The recipe") ----------------------------------
DIFFUSION_BATCH = 256  # latents per device per micro-batch
DIFFUSION_LR = 1e-3  # peak AdamW learning rate
DIFFUSION_WARMUP = 200  # linear warmup steps before the cosine

# ----- ldlm train-autoencoder: the gate on the latent space ----------------------------------
RECONSTRUCTION_GATE = 50.0  # held-out reconstruction BLEU below which the latents carry too little

# ----- ldlm sample: the sampler (the seed design's DDPM with 1000 steps scored lower MAUVE on E2E
# than DPM-Solver++ with 20, at 50 times the time) ------------------------------------------
SAMPLER = "dpm-solver"  # --scheduler
SAMPLER_STEPS = 20  # --num-inference-steps

# ----- ldlm sample -------------------------------------------------------------------------
VARIATION_STRENGTH = 0.3  # --strength of --init-text variations (keeps a text's frame)

# ----- ldlm interpolate --run ----------------------------------------------------------------
INTERPOLATION_STRENGTH = 0.2  # re-noising strength of each point
INTERPOLATION_STEPS = 50  # inference steps of that re-noising
INTERPOLATION_SAMPLER = "dpm-solver"

# ----- ldlm sample --mbr N --reranker CLF: BLEU points (0-100) per unit of each term --------
RERANKER_WEIGHT = 0.5  # per nat of log p(condition | text)
FLUENCY_WEIGHT = 10.0  # per nat per word of log p(text)
