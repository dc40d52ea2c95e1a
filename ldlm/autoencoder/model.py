"""The text autoencoder that defines ldlm's latent space.

encoder (any Hugging Face `AutoModel`, pretrained or built from scratch)
  -> compressor (mean pooling: k = 1, or k learned queries that cross-attend, LD4LG-style)
  -> normalisation (LayerNorm without affine per latent token: every latent vector has mean 0
     and variance 1 over its d dimensions, so its norm is sqrt(d) whatever the encoder)
  -> decoder (a causal LM that reads the k latents through cross-attention in every layer, the
     default, or with `latent_injection="prefix"` as k soft-prefix embeddings).

The decoder is trained on latents with Gaussian noise added, so that imperfect latents
(sampled by a diffusion model) still decode to clean text.

The saved folder follows `save_pretrained` conventions: `config.json`, `model.safetensors`,
`encoder_tokenizer/`, `decoder_tokenizer/`; `LatentAutoencoder.from_pretrained(path)`
loads all of it. Its `fingerprint` (a hash of the weights that map text to latents) is
the latent-space id that stores, runs and latent streams carry.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ldlm.args import AutoencoderOptions
from ldlm.autoencoder.lengths import LIMIT
from ldlm.autoencoder.tokenizer import pad_rows
from ldlm.errors import InputError, check_finite_fields
from ldlm.recipe import SAVED_LATENT_INJECTION

# Models built from scratch, by --size: (hidden, encoder layers, decoder layers, heads, vocab)
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 2, 2, 2, 1024),
    "small": (128, 3, 3, 4, 4096),
    "base": (512, 6, 8, 8, 16384),
}


@dataclass
class AutoencoderConfig(AutoencoderOptions):
    """Everything that defines an autoencoder: what `ldlm train-autoencoder` was asked for (the
    fields of `ldlm.args.AutoencoderOptions`, its options of the same names) and, once built, the
    configs of its parts. Saved as config.json; `LatentAutoencoder(config)` rebuilds the model from
    it (nanoGPT's GPTConfig(**model_args))."""

    freeze_encoder: bool | None = None  # keep the encoder's weights fixed; None: resolve()
    encoder_config: dict | None = None  # Hugging Face config dict of the encoder (set when built)
    decoder_config: dict | None = None  # Hugging Face config dict of the decoder (set when built)
    fingerprint: str | None = None  # latent-space id, set when saved
    extra: dict = field(default_factory=dict)  # provenance: data, steps, reconstruction scores

    @classmethod
    def from_saved(cls, saved: dict) -> AutoencoderConfig:
        """The config of a saved autoencoder or checkpoint: an option it predates takes the value
        the saving version used, not today's default (a config.json without latent_injection was
        a prefix decoder)."""
        return cls(**{"latent_injection": SAVED_LATENT_INJECTION, **saved})

    def check(self) -> None:
        """Refuse options that cannot build a model (InputError, one line)."""
        check_finite_fields(self)
        if self.size not in SIZES:
            raise InputError(f"--size {self.size!r} is not one of {', '.join(SIZES)}")
        if self.pooling not in (None, "mean", "queries"):
            raise InputError(f"--pooling {self.pooling!r} must be 'mean' or 'queries'")
        if self.pooling == "mean" and self.latent_tokens not in (None, 1):
            raise InputError(f"--latent-tokens {self.latent_tokens} needs --pooling queries; mean pooling "
                             "gives k = 1")
        for name, value in (("--latent-tokens", self.latent_tokens), ("--latent-dim", self.latent_dim)):
            if value is not None and value < 1:
                raise InputError(f"{name} {value} must be at least 1")
        if self.max_length is not None and not 4 <= self.max_length <= LIMIT:
            raise InputError(f"--max-length {self.max_length} must be between 4 and {LIMIT} tokens (the "
                             "positions an autoencoder is built with, and the most a reconstruction "
                             f"writes); give at most {LIMIT}, or leave it out to measure the corpus")
        if not (self.latent_noise >= 0 and math.isfinite(self.latent_noise)):
            raise InputError(f"--latent-noise {self.latent_noise} must be a finite number >= 0")
        if self.latent_noise_max is not None and not self.latent_noise <= self.latent_noise_max:
            raise InputError(f"--latent-noise-max {self.latent_noise_max} must be at least --latent-noise "
                             f"{self.latent_noise} (each text's noise std is drawn between the two)")
        layers = (("--encoder-layers", self.encoder_layers), ("--decoder-layers", self.decoder_layers))
        for name, value in layers:
            if value is not None and not 1 <= value <= 48:
                raise InputError(f"{name} {value} must be between 1 and 48")
        if not 0 <= self.word_dropout < 1:
            raise InputError(f"--word-dropout {self.word_dropout} must be in [0, 1) (0: the decoder "
                             "reads every token; 0.3 replaces three in ten by pad)")

    def resolve(self, encoder_hidden: int) -> AutoencoderConfig:
        """A copy with the defaults that depend on the parts filled in: mean pooling for a
        pretrained encoder (k = 1, d = its hidden size), else 8 queries of width 64; a
        pretrained encoder frozen, one from scratch trained."""
        pooling = self.pooling or ("mean" if self.encoder_source else "queries")
        return replace(
            self, pooling=pooling,
            latent_tokens=1 if pooling == "mean" else (self.latent_tokens or 8),
            latent_dim=self.latent_dim or (encoder_hidden if pooling == "mean" else 64),
            freeze_encoder=(self.freeze_encoder if self.freeze_encoder is not None
                            else bool(self.encoder_source)))


class QueryCompressor(nn.Module):
    """k learned queries cross-attend to the encoder states (a Perceiver resampler)."""

    def __init__(self, hidden: int, k: int, d: int, layers: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(k, hidden) / math.sqrt(hidden))
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln_q": nn.LayerNorm(hidden),
                    "ln_kv": nn.LayerNorm(hidden),
                    "attn": nn.MultiheadAttention(hidden, heads, batch_first=True),
                    "ln_ff": nn.LayerNorm(hidden),
                    "ff": nn.Sequential(
                        nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden)
                    ),
                }
            )
            for _ in range(layers)
        )
        self.proj = nn.Linear(hidden, d)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # states (B, T, H), mask (B, T) with 1 for real tokens
        q = self.queries.unsqueeze(0).expand(states.shape[0], -1, -1)  # (B, k, H)
        pad = mask == 0
        for b in self.blocks:
            kv = b["ln_kv"](states)
            q = q + b["attn"](b["ln_q"](q), kv, kv, key_padding_mask=pad, need_weights=False)[0]
            q = q + b["ff"](b["ln_ff"](q))
        return self.proj(q)  # (B, k, d)


class MeanCompressor(nn.Module):
    """Mean of the last hidden states over real tokens (k = 1), optionally projected to d."""

    def __init__(self, hidden: int, d: int):
        super().__init__()
        self.proj = nn.Identity() if d == hidden else nn.Linear(hidden, d)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        mean = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
        return self.proj(mean).unsqueeze(1)  # (B, 1, d)


def _build(config: dict, causal: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    cfg = dict(config)
    hf_config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    return (AutoModelForCausalLM if causal else AutoModel).from_config(hf_config)


def _hidden_size(config: dict) -> int:
    for key in ("hidden_size", "n_embd", "d_model", "dim"):
        if key in config:
            return int(config[key])
    raise ValueError(f"cannot find the hidden size in the {config.get('model_type')} config")


class LatentAutoencoder(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="ldlm",
    tags=["ldlm", "latent-diffusion", "text-autoencoder"],
):
    """Text <-> latent autoencoder; latents are (B, k, d), normalised per latent token."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        if isinstance(config, dict):
            config = AutoencoderConfig.from_saved(config)
        self.config = config
        self.encoder = _build(config.encoder_config, causal=False)
        hidden = _hidden_size(config.encoder_config)
        if config.pooling == "mean":
            self.compressor = MeanCompressor(hidden, config.latent_dim)
        else:
            heads = max(1, hidden // 64) if hidden % 64 == 0 else 1
            self.compressor = QueryCompressor(
                hidden, config.latent_tokens, config.latent_dim, config.compressor_layers, heads
            )
        self.decoder = _build(config.decoder_config, causal=True)
        width = _hidden_size(config.decoder_config)
        self.prefix = nn.Sequential(
            nn.Linear(config.latent_dim, width), nn.GELU(), nn.Linear(width, width)
        )
        self.encoder_tokenizer = None  # set by from_pretrained or the trainer
        self.decoder_tokenizer = None

    # ----- text -> latent -------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.config.latent_tokens, self.config.latent_dim)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> normalised latents (B, k, d)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        z = self.compressor(states.last_hidden_state, attention_mask)  # (B, k, d)
        return F.layer_norm(z.float(), (z.shape[-1],))

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Texts -> latents (n, k, d) on the model's device, in eval mode: length-sorted
        batches, truncated as `ldlm encode` does (ldlm.autoencoder.batching)."""
        from ldlm.autoencoder.batching import encode_chunk

        latents, _ = encode_chunk(self, list(texts), batch_size)
        return torch.from_numpy(latents).to(self.device)

    # ----- latent -> text -------------------------------------------------------------
    @property
    def cross_attention(self) -> bool:
        """Whether every decoder layer reads the latents by cross-attention (else: a prefix)."""
        return self.config.latent_injection == "cross-attention"

    def _prefix_embeds(self, latents: torch.Tensor) -> torch.Tensor:
        # latents (B, k, d) -> the decoder's view of them (B, k, W): prefix or cross-attention states
        return self.prefix(latents.to(self.prefix[0].weight.dtype))

    def _next_token_logits(self, latents: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                           inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, T-1, V): position i predicts ids[:, i+1] given the latent
        prefix; `inputs` (B, T): the tokens the decoder reads instead of `ids` (word dropout)."""
        k = latents.shape[1]
        embeds = self.decoder.get_input_embeddings()(ids if inputs is None else inputs)  # (B, T, W)
        if self.cross_attention:
            return self.decoder(inputs_embeds=embeds, attention_mask=mask,
                                encoder_hidden_states=self._prefix_embeds(latents)).logits[:, :-1]
        embeds = torch.cat([self._prefix_embeds(latents), embeds], dim=1)  # (B, k+T, W)
        full_mask = torch.cat([mask.new_ones(mask.shape[0], k), mask], dim=1)
        return self.decoder(inputs_embeds=embeds, attention_mask=full_mask).logits[:, k:-1]

    def decoder_loss(
        self, latents: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
        inputs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced cross-entropy of `ids` (B, T: bos ... eos pad) given latents;
        `inputs` (B, T): the tokens the decoder reads instead of `ids` (word dropout)."""
        pred = self._next_token_logits(latents, ids, mask, inputs)
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), target.reshape(-1))

    @torch.no_grad()
    def text_logprob(self, latents: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Mean log-probability per token (eos included) of each text given its latent: (B,)."""
        batch = self.tokenize_for_decoder(texts)
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        logits = self._next_token_logits(latents.to(self.device), ids, mask).float()
        token = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1)
        real = mask[:, 1:].to(token.dtype)
        return (token * real).sum(1) / real.sum(1).clamp(min=1)

    def tokenize_for_decoder(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tok = self.decoder_tokenizer
        rows = tok(texts, add_special_tokens=False, truncation=True,
                   max_length=self.config.max_length - 2)["input_ids"]
        ids, mask = pad_rows([[tok.bos_token_id, *r, tok.eos_token_id] for r in rows],
                             tok.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        noise_std: float | None = None,
        encoder_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss: encode, add noise to the latents, decode with teacher forcing.
        `encoder_states` (B, T, H): a frozen encoder's last hidden states for `input_ids`,
        computed beforehand (ldlm.autoencoder.states), so the encoder does not run here."""
        if encoder_states is not None:
            z = self.compressor(encoder_states.to(self.prefix[0].weight.dtype), attention_mask)
            z = F.layer_norm(z.float(), (z.shape[-1],))
        elif self.config.freeze_encoder:
            with torch.no_grad():
                states = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            z = self.compressor(states.last_hidden_state.detach(), attention_mask)
            z = F.layer_norm(z.float(), (z.shape[-1],))
        else:
            z = self.encode(input_ids, attention_mask)
        std = self.latent_noise_std(z, noise_std)
        if torch.is_tensor(std) or std > 0:  # no draw at 0: the generator's stream stays as it was
            z = z + std * torch.randn_like(z)
        inputs = None
        if self.training and self.config.word_dropout > 0:  # pad for some tokens: the latent must tell
            rate = self.config.word_dropout
            drop = torch.rand(decoder_input_ids.shape, device=decoder_input_ids.device) < rate
            drop[:, 0] = False  # bos stays
            inputs = decoder_input_ids.masked_fill(drop, self.decoder_tokenizer.pad_token_id)
        return self.decoder_loss(z, decoder_input_ids, decoder_attention_mask, inputs)

    def latent_noise_std(self, z: torch.Tensor, noise_std: float | None = None) -> torch.Tensor | float:
        """The std of the noise the decoder's latents z (B, k, d) get: `noise_std` if given, else
        the config's latent_noise, or in training with latent_noise_max one draw per text from
        U(latent_noise, latent_noise_max) shaped (B, 1, 1)."""
        cfg = self.config
        if noise_std is not None:
            return noise_std
        if cfg.latent_noise_max is None or not self.training:
            return cfg.latent_noise
        u = torch.rand(z.shape[0], 1, 1, device=z.device, dtype=z.dtype)
        return cfg.latent_noise + (cfg.latent_noise_max - cfg.latent_noise) * u

    @property
    def max_new_tokens(self) -> int:
        """The most tokens the decoder can write after the latent prefix and bos (its positions)."""
        cfg = self.decoder.config
        positions = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        prefix = 0 if self.cross_attention else self.config.latent_tokens
        return int(positions) - prefix - 1 if positions else 10**6

    def check_max_new_tokens(self, max_new_tokens: int | None) -> int:
        """`max_new_tokens`, or the training length when None; InputError past the decoder's positions."""
        if max_new_tokens is None:
            return min(self.config.max_length, self.max_new_tokens)
        if max_new_tokens > self.max_new_tokens:
            raise InputError(f"--max-new-tokens {max_new_tokens} is more than this autoencoder's decoder "
                             f"can write after its {self.config.latent_tokens} latent tokens "
                             f"({self.max_new_tokens}, from its positions); ask for at most "
                             f"{self.max_new_tokens} (it was trained on texts of up to "
                             f"{self.config.max_length} tokens)")
        return max_new_tokens

    @torch.no_grad()
    def generate(
        self,
        latents: torch.Tensor,
        *,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        temperature: float = 0.0,
        top_p: float | None = None,
        generator_seed: int | None = None,
    ) -> list[str]:
        """Latents (B, k, d) -> texts. temperature 0 means greedy (or beam search);
        `max_new_tokens` None: the length the autoencoder was trained for."""
        max_new_tokens = self.check_max_new_tokens(max_new_tokens)
        tok = self.decoder_tokenizer
        latents = latents.to(self.device)
        b = latents.shape[0]
        bos = torch.full((b, 1), tok.bos_token_id, dtype=torch.long, device=self.device)
        kwargs: dict = {"num_beams": num_beams}
        embeds = self.decoder.get_input_embeddings()(bos)  # (B, 1, W)
        if self.cross_attention:
            kwargs["encoder_hidden_states"] = self._prefix_embeds(latents)
        else:
            embeds = torch.cat([self._prefix_embeds(latents), embeds], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        sample = kwargs["do_sample"] = temperature > 0
        if sample:
            kwargs["temperature"] = temperature
            kwargs["top_p"] = top_p if top_p is not None else 1.0
            kwargs["top_k"] = 0
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        out = self.decoder.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **kwargs,
        )
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

    # ----- identity and persistence ---------------------------------------------------
    def compute_fingerprint(self) -> str:
        """Hash of the weights and settings that map text to latents: the latent-space id."""
        h = hashlib.sha256()
        h.update(repr((self.config.pooling, self.latent_shape)).encode())
        state = {**self.encoder.state_dict(prefix="encoder."),
                 **self.compressor.state_dict(prefix="compressor.")}
        for name in sorted(state):
            h.update(name.encode())
            h.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint or self.compute_fingerprint()

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        self.encoder_tokenizer.save_pretrained(save_directory / "encoder_tokenizer")
        self.decoder_tokenizer.save_pretrained(save_directory / "decoder_tokenizer")

    def save_pretrained(self, save_directory, **kwargs):
        """Save config, safetensors weights and both tokenizers (fingerprint recorded)."""
        self.config.fingerprint = self.compute_fingerprint()
        return super().save_pretrained(save_directory, config={"config": asdict(self.config)}, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id, revision=None, cache_dir=None, force_download=False,
                         local_files_only=False, token=None, map_location="cpu", strict=True,
                         **model_kwargs):
        from safetensors.torch import load_model
        from transformers import AutoTokenizer

        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(
                model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                local_files_only=local_files_only, token=token,
            ))
        model = cls(model_kwargs["config"])
        load_model(model, str(folder / "model.safetensors"), strict=strict, device=map_location)
        # the latent-space id comes from the weights, never from config.json alone: a folder
        # whose model.safetensors was swapped for another run's is refused, not trusted (hashing
        # costs 0.08 s for a 26M-parameter encoder on a CPU: no cache needed)
        recorded, actual = model.config.fingerprint, model.compute_fingerprint()
        if recorded is not None and recorded != actual:
            raise InputError(
                f"autoencoder {str(model_id)!r}: its model.safetensors defines latent space {actual}, "
                f"but its config.json records {recorded} (the weights were replaced by another run's?); "
                "restore the folder's own weights or retrain it"
            )
        model.config.fingerprint = actual
        for side in ("encoder", "decoder"):  # never a tokenizer's own code (auto_map): no remote code
            setattr(model, f"{side}_tokenizer", AutoTokenizer.from_pretrained(
                folder / f"{side}_tokenizer", trust_remote_code=False))
        return model.eval()
