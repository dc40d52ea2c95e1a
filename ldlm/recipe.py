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

# ----- ldlm train-autoencoder: the latent space (noise 0.3 on the latents while the decoder trains
# made sampled latents decode to E2E MAUVE 0.930 against 0.836 at 0.1: benchmarks/README.md) ------
AE_LATENT_NOISE = 0.3  # --latent-noise: std of the Gaussian noise, latents normalised to unit RMS
AE_WORD_DROPOUT = 0.0  # --word-dropout: share of the decoder's input tokens replaced by pad
# --latent-injection: the decoder attends to the latents from every layer; on the E2E dev slice at
# 1,800 CPU-s MAUVE 0.873 against the prefix's 0.793 (3 sampling seeds each, control unchanged)
AE_LATENT_INJECTION = "cross-attention"
SAVED_LATENT_INJECTION = "prefix"  # what an autoencoder saved before the option existed used

# ----- where a dataset's texts are: every command that reads one, and ldlm.data.load_texts -----
TEXT_COLUMN = "text"  # --text-column
SPLIT = "train"  # --split of a hub dataset

# ----- ldlm encode ---------------------------------------------------------------------------
ENCODE_BATCH = 128  # --batch-size: texts encoded together
CHUNK_ROWS = 4096  # --chunk-rows: rows per store chunk (the unit a resumed encode starts again at)

# ----- ldlm quickstart: the built-in run, under 10 minutes on 2 CPU cores ------------------------
# A budget of CPU-seconds for the whole run, shared by the two trainers; the step counts are caps
# that a fast machine reaches within it. The same steps took 1,720 CPU-s (15 min 8 s wall) on
# one 2-core machine and 7 min 34 s wall on another, so steps alone cannot promise 10 minutes.
QUICKSTART_CPU_SECONDS = 900  # the whole run: ~8 minutes wall on 2 cores where both are free
QUICKSTART_AE_SHARE = 0.64  # of it for train-autoencoder (the 2,000:2,500 steps' CPU split, 70:30)
QUICKSTART_DIFFUSION_SHARE = 0.28  # for train; the rest (72 CPU-s) pays for encode, sample,
# decode, evaluate and start-up
QUICKSTART_AE_STEPS = 2000  # train-autoencoder steps at most (batch 64); 800 at latent noise 0.3: MAUVE 0.62
QUICKSTART_AE_LATENT_NOISE = 0.1  # its --latent-noise: within the budget, at 0.3 its autoencoder collapsed
# (1,695 steps: reconstruction BLEU 6.8, MAUVE 0.006); at 0.1 with 827 steps, BLEU 25.4, MAUVE 0.871
QUICKSTART_AE_LATENT_INJECTION = "prefix"  # the quickstart's figures (MAUVE 0.935) were measured with it
QUICKSTART_AE_LR = 2e-3  # its peak learning rate: twice train-autoencoder's 1e-3, for so short a run
QUICKSTART_DIFFUSION_STEPS = 2500  # train optimiser steps at most (batch 256)
QUICKSTART_SAMPLES = 500  # texts generated and scored

# ----- ldlm train: the optimiser (the original design's batch 16, lr 1e-4, warmup 500 trained far
# slower per CPU-second: benchmarks/README.md, "The recipe") ----------------------------------
DIFFUSION_BATCH = 256  # latents per device per micro-batch
DIFFUSION_LR = 1e-3  # peak AdamW learning rate
DIFFUSION_WARMUP = 200  # linear warmup steps before the cosine

# ----- ldlm train-autoencoder: the gate on the latent space ----------------------------------
RECONSTRUCTION_GATE = 50.0  # held-out reconstruction BLEU below which the latents carry too little

# ----- ldlm sample: the sampler (the original design's DDPM with 1000 steps scored lower MAUVE on E2E
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
