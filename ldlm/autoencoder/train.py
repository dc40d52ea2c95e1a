"""Stage: texts -> a trained autoencoder folder (the latent space everything else uses)."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, replace
from pathlib import Path

from ldlm.args import AutoencoderTrainArgs
from ldlm.atomic import publish, remove_path
from ldlm.autoencoder.lengths import LIMIT, measure_lengths
from ldlm.autoencoder.model import SIZES, AutoencoderConfig, LatentAutoencoder
from ldlm.autoencoder.tokenizer import ensure_special_tokens, pad_rows, train_tokenizer
from ldlm.checkpoints import check_same, find_checkpoint, list_checkpoints, remove_leftovers
from ldlm.data import TextRows
from ldlm.distributed import check_mixed_precision, ranks
from ldlm.errors import InputError, RuntimeFailure, check_finite_fields, first_line
from ldlm.holdout import holdout, spaced_holdout  # noqa: F401  (spaced_holdout: importable here too)
from ldlm.loop import LoopArgs, Steps, TrainingLoop, diverged
from ldlm.metrics import ReconstructionScores, reconstruction_scores
from ldlm.progress import SILENT, Reporter
from ldlm.recipe import AE_STEPS, SAVED_LATENT_INJECTION

# keys of a Hugging Face config dict that describe a saved file, not the architecture
_TRANSIENT_KEYS = ("transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype")


# the file that marks a whole train-autoencoder checkpoint, written last
CHECKPOINT_FILE = "ldlm_autoencoder_checkpoint.json"


def _clean(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _TRANSIENT_KEYS}


def _load_pretrained(kind: str, name: str, causal: bool):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        loader = AutoModelForCausalLM if causal else AutoModel
        return (loader.from_pretrained(name, trust_remote_code=False),
                AutoTokenizer.from_pretrained(name, trust_remote_code=False))
    except Exception as exc:
        first = first_line(exc)
        raise InputError(
            f"could not load --{kind} {name!r}: {first}; give a local model folder or a hub id "
            "reachable from this machine"
        ) from exc


def build_autoencoder(config: AutoencoderConfig, texts: list[str],
                      reporter: Reporter = SILENT) -> LatentAutoencoder:
    """Build an untrained autoencoder: pretrained parts loaded, scratch parts sized by
    `config.size`; the returned model's config is `config` resolved, with its parts' configs.
    Without `config.max_length`, it is measured on `texts` (ldlm.autoencoder.lengths); the
    length and the share of texts it cuts are logged either way."""
    from transformers import AutoConfig, GPT2Config

    config.check()
    hidden, enc_layers, dec_layers, heads, vocab = SIZES[config.size]
    enc_layers, dec_layers = config.encoder_layers or enc_layers, config.decoder_layers or dec_layers
    scratch_tok = None
    if config.encoder_source is None or config.decoder_source is None:
        scratch_tok = train_tokenizer(texts, vocab)
    enc_model = dec_model = None
    enc_tok = dec_tok = scratch_tok
    if config.encoder_source:
        enc_model, enc_tok = _load_pretrained("encoder", config.encoder_source, causal=False)
    if config.decoder_source:
        dec_model, dec_tok = _load_pretrained("decoder", config.decoder_source, causal=True)
        ensure_special_tokens(dec_tok)

    lengths = measure_lengths(texts, enc_tok, dec_tok)
    limit = min([LIMIT] + [_positions(m.config) for m in (enc_model, dec_model) if m is not None])
    for flag, part in (("--encoder", enc_model), ("--decoder", dec_model)):
        if part is not None and config.max_length is not None and config.max_length > _positions(part.config):
            raise InputError(f"--max-length {config.max_length} is more than the {_positions(part.config)} "
                             f"positions of the pretrained {flag} {getattr(config, flag[2:] + '_source')!r}; "
                             f"give at most {limit}, or leave it out to measure the corpus")
    max_length = config.max_length or lengths.suggested(limit)
    reporter.log(lengths.describe(max_length, given=config.max_length is not None))

    if enc_model is not None:
        enc_config = _clean(enc_model.config.to_dict())
    else:
        enc_config = _clean(AutoConfig.for_model(
            "bert", vocab_size=len(scratch_tok), hidden_size=hidden,
            num_hidden_layers=enc_layers, num_attention_heads=heads, intermediate_size=4 * hidden,
            max_position_embeddings=max(max_length, 64), pad_token_id=scratch_tok.pad_token_id,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        ).to_dict())
    resolved = replace(config, max_length=max_length).resolve(enc_config.get("hidden_size", hidden))
    cross = config.latent_injection == "cross-attention"
    if dec_model is not None:  # with cross-attention, the pretrained decoder gains its layers
        dec_config = _clean(dec_model.config.to_dict())
        dec_config["add_cross_attention"] = cross or dec_config.get("add_cross_attention", False)
    else:  # positions for the latent prefix (if any), bos and a text as long again as max_length
        prefix = 0 if cross else resolved.latent_tokens
        dec_config = _clean(GPT2Config(
            vocab_size=len(scratch_tok), n_embd=hidden, n_layer=dec_layers, n_head=heads,
            n_positions=prefix + 1 + 2 * max_length, bos_token_id=scratch_tok.bos_token_id,
            eos_token_id=scratch_tok.eos_token_id, pad_token_id=scratch_tok.pad_token_id,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu",
            add_cross_attention=cross,
        ).to_dict())

    model = LatentAutoencoder(replace(resolved, encoder_config=enc_config, decoder_config=dec_config,
                                      extra={}))
    if enc_model is not None:
        model.encoder.load_state_dict(enc_model.state_dict())
    if cross:
        _check_cross_attention(model.decoder, config.decoder_source)
    if dec_model is not None:  # cross-attention layers a pretrained decoder lacks start fresh
        missing, unexpected = model.decoder.load_state_dict(dec_model.state_dict(), strict=not cross)
        if [k for k in missing if not _is_cross_attention(k)] or unexpected:
            raise RuntimeError(f"the decoder's weights do not fit: missing {missing}, unexpected "
                               f"{unexpected}")
    model.encoder_tokenizer, model.decoder_tokenizer = enc_tok, dec_tok
    return model


def _is_cross_attention(name: str) -> bool:
    """Whether a decoder parameter belongs to a cross-attention layer (GPT-2's, BART's names)."""
    return any(part in name for part in ("crossattention", "encoder_attn", "ln_cross_attn"))


def _check_cross_attention(decoder, source: str | None) -> None:
    """InputError when `--latent-injection cross-attention` built a decoder without such layers."""
    if not any(_is_cross_attention(name) for name, _ in decoder.named_parameters()):
        raise InputError(f"--latent-injection cross-attention needs a decoder with cross-attention layers, "
                         f"and --decoder {source!r} ({type(decoder).__name__}) has none; use a GPT-2-like "
                         "decoder, or --latent-injection prefix")


def _positions(config) -> int:
    """The positions a pretrained model has (no limit when its config does not say)."""
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
               or LIMIT)


GROUP_BATCHES = 50  # batches whose rows are sorted by length together (as transformers' group_by_length)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random,
                           group: int = GROUP_BATCHES):
    """Endless batches of row indices, epoch after epoch: each epoch shuffles the rows, sorts
    every run of `group` batches' rows by length and cuts it into batches (texts of a batch
    have about the same length, so little compute goes to padding), then shuffles the batches.
    A last short batch of the epoch is dropped (all rows in one batch when there are fewer)."""
    n = len(lengths)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        batches = []
        for i in range(0, n, batch_size * group):
            block = sorted(order[i:i + batch_size * group], key=lengths.__getitem__)
            batches += [block[j:j + batch_size] for j in range(0, len(block), batch_size)]
        batches = [b for b in batches if len(b) == batch_size] or batches[:1]
        rng.shuffle(batches)
        yield from batches


def reconstruct(
    model: LatentAutoencoder, texts: list[str], batch_size: int = 64,
    max_new_tokens: int | None = None,
) -> list[str]:
    """Greedy decode(encode(text)) for each text, in order."""
    model.eval()
    out: list[str] = []
    limit = max_new_tokens or model.config.max_length
    for i in range(0, len(texts), batch_size):
        z = model.encode_texts(texts[i : i + batch_size])
        out.extend(model.generate(z, max_new_tokens=limit))
    return out


def _check_args(args: AutoencoderTrainArgs) -> None:
    check_finite_fields(args)
    if args.eval_rows < 0:
        raise InputError(f"--eval-rows {args.eval_rows} must be >= 0 (0: no reconstruction figures)")
    args.check_budget()
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size} must be at least 1")
    if args.learning_rate <= 0:
        raise InputError(f"--learning-rate {args.learning_rate} must be > 0")
    if args.checkpointing_steps is not None and args.checkpointing_steps < 1:
        raise InputError(f"--checkpointing-steps {args.checkpointing_steps} must be at least 1")
    if args.checkpoints_total_limit < 1:
        raise InputError(f"--checkpoints-total-limit {args.checkpoints_total_limit} must be at least 1")
    check_mixed_precision(args.mixed_precision)


def check_training(config: AutoencoderConfig, args: AutoencoderTrainArgs) -> None:
    """Refuse bad options (InputError) before any data is read or model built."""
    config.check()
    _check_args(args)


# options added after checkpoints were first written: unset, they are left out of a run's
# identity, so that a checkpoint of an earlier version still resumes
_LATER_OPTIONS = {"latent_noise_max": None, "encoder_layers": None, "decoder_layers": None,
                  "latent_injection": SAVED_LATENT_INJECTION}


def _identity(config: AutoencoderConfig, args: AutoencoderTrainArgs, rows: TextRows) -> dict:
    """What a checkpoint must share with the run that resumes it (model, data and its order)."""
    options = {k: v for k, v in asdict(config).items()
               if not (k in _LATER_OPTIONS and v == _LATER_OPTIONS[k])}
    return {
        "options": options, "data_digest": rows.digest(), "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "warmup_steps": args.warmup_steps,
        "weight_decay": args.weight_decay, "mixed_precision": args.mixed_precision,
        "seed": args.seed, "eval_rows": args.eval_rows,
    }


def _model_from_checkpoint(ckpt: Path, saved: dict) -> LatentAutoencoder:
    """The model a checkpoint was made of (weights come later, from accelerate's state)."""
    from transformers import AutoTokenizer

    try:
        model = LatentAutoencoder(AutoencoderConfig.from_saved(saved["config"]))
        for side in ("encoder", "decoder"):
            setattr(model, f"{side}_tokenizer", AutoTokenizer.from_pretrained(
                ckpt / f"{side}_tokenizer", trust_remote_code=False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeFailure(
            f"checkpoint {str(ckpt)!r} is damaged ({first_line(exc)}); resume from an older one "
            "with --resume-from, or start again with --overwrite"
        ) from exc
    return model


def save_final(model: LatentAutoencoder, out: Path) -> None:
    """Write the model into `out` beside its checkpoints, config.json last (ldlm.atomic.publish),
    so `out` is a loadable model only once the whole new model is there."""
    publish(out, model.save_pretrained, "config.json")


def train_autoencoder(
    rows: TextRows,
    out: str | Path,
    config: AutoencoderConfig | None = None,
    args: AutoencoderTrainArgs | None = None,
    reporter: Reporter = SILENT,
    overwrite: bool = False,
) -> tuple[LatentAutoencoder, ReconstructionScores | None]:
    """Train an autoencoder on `rows` and save it to `out`.

    `out` receives rotated `checkpoint-<step>/` folders (accelerate states: weights,
    optimiser, lr schedule, RNG; plus the config and tokenizers), every
    `args.checkpointing_steps` and at the end, then the model (`save_pretrained` layout,
    config.json written last). `args.resume` ("latest" or a checkpoint folder) continues an
    interrupted run exactly: same data order, same random numbers, same final weights.
    Without `resume`, a model and checkpoints already in `out` are replaced (the CLI asks for
    --overwrite first); `overwrite` only refuses to be combined with `resume`.
    Returns the model and its reconstruction scores on a held-out slice of the rows.
    """
    from accelerate.utils import set_seed

    config, args = config or AutoencoderConfig(), args or AutoencoderTrainArgs()
    config.check()  # every flag is checked before any work starts
    _check_args(args)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder path")
    if args.resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other; drop one")
    identity = _identity(config, args, rows)
    ckpt = find_checkpoint(out, args.resume, CHECKPOINT_FILE) if args.resume else None
    saved = check_same(ckpt, CHECKPOINT_FILE, identity) if ckpt else None

    set_seed(args.seed)
    texts = list(rows.texts)  # training tokenises every text anyway
    train_idx, held_idx = holdout(len(texts), args.eval_rows, "spaced")
    if len(texts) > 1 and len(set(texts)) == 1:
        reporter.log(f"warning: all {len(texts)} texts are the same text: the autoencoder learns that one "
                     "text (its loss goes to 0, its reconstruction is perfect) and its latents carry "
                     "nothing; train it on a corpus of different texts")
    train_texts = [texts[i] for i in train_idx]
    held_texts = [texts[i] for i in held_idx]

    if saved is not None:
        reporter.log(f"resuming from {ckpt} (step {saved['step']})")
        model = _model_from_checkpoint(ckpt, saved)
    else:
        model = build_autoencoder(config, train_texts, reporter)  # logged once built: a failure is one line
        size = sum(p.numel() for p in model.parameters())
        reporter.log(f"built the autoencoder ({size / 1e6:.1f}M parameters, "
                     f"{len(train_texts)} training texts)")
    group = ranks()  # one process, or this process's place under `accelerate launch`
    if not group.is_main:
        reporter = SILENT
    if group.count > 1:
        _check_same_tokenizers(model)
    if model.config.freeze_encoder:
        model.encoder.requires_grad_(False)
    pooler = getattr(model.encoder, "pooler", None)
    if pooler is not None:  # a BERT-style pooler never reaches the loss (DDP refuses idle weights)
        pooler.requires_grad_(False)
    loop = TrainingLoop(model, LoopArgs(
        **args.loop_budget(AE_STEPS), learning_rate=args.learning_rate, warmup_steps=args.warmup_steps,
        schedule="cosine-floor", min_lr_ratio=0.1, weight_decay=args.weight_decay,
        max_grad_norm=1.0, mixed_precision=args.mixed_precision),
        params=[p for p in model.parameters() if p.requires_grad])
    core: LatentAutoencoder = loop.core
    start, last_loss = 0, None
    if saved is not None:
        loop.load_checkpoint(ckpt)  # weights, optimiser, lr schedule and every RNG
        start, last_loss = int(saved["step"]), saved.get("loss")
        if note := loop.replan_note(f"step {start}"):
            reporter.log(note)

    out.mkdir(parents=True, exist_ok=True)
    if group.is_main:
        remove_leftovers(out)
        if saved is None:  # a new run: checkpoints of an earlier one must not mix with its own
            for old in list_checkpoints(out, CHECKPOINT_FILE):
                remove_path(old)
    group.wait()

    def checkpoint(step: int) -> None:
        def tokenizers(tmp: Path) -> None:
            if group.is_main:
                core.encoder_tokenizer.save_pretrained(tmp / "encoder_tokenizer")
                core.decoder_tokenizer.save_pretrained(tmp / "decoder_tokenizer")

        record = {**identity, "loss": last_loss, "config": asdict(core.config)}
        loop.save_checkpoint(out, step, CHECKPOINT_FILE, record, args.checkpoints_total_limit, tokenizers)

    enc = core.encoder_tokenizer(train_texts, truncation=True, max_length=core.config.max_length)["input_ids"]
    dec_all = core.tokenize_for_decoder(train_texts)  # padded once; batches trim it
    rng = random.Random(args.seed)
    if len(train_texts) < group.count:
        raise InputError(f"{len(train_texts)} training texts cannot be shared by {group.count} "
                         "processes; give more texts or launch fewer processes")
    # every process draws the same global batch of batch_size x processes and takes its share
    sizes = [max(len(e), int(m)) for e, m in zip(enc, dec_all["attention_mask"].sum(1).tolist(), strict=True)]
    batches = length_grouped_batches(sizes, min(args.batch_size * group.count, len(train_texts)), rng)
    for _ in range(start):  # the data order goes on where the checkpoint stopped
        next(batches)
    pad_enc = core.encoder_tokenizer.pad_token_id or 0
    states = None  # a frozen encoder runs once over the corpus, not on every step
    if core.config.freeze_encoder and args.cache_encoder_states:
        from ldlm.autoencoder.states import encoder_states

        states = encoder_states(core.encoder, enc, pad_enc, reporter)

    model = loop.model
    model.train()
    if core.config.freeze_encoder:
        core.encoder.eval()

    def train_step(done: int) -> float:
        nonlocal last_loss
        idx = next(batches)[group.index :: group.count]
        if states is None:
            ids, mask = pad_rows([enc[i] for i in idx], pad_enc)
            given = {}
        else:
            cached, mask = states.batch(idx)
            ids, given = None, {"encoder_states": cached.to(loop.device)}
        d_mask = dec_all["attention_mask"][idx]
        d_width = int(d_mask.sum(1).max())
        d_ids, d_mask = dec_all["input_ids"][idx, :d_width], d_mask[:, :d_width]
        dev = loop.device
        last_loss = loop.step(model, None if ids is None else ids.to(dev), mask.to(dev), d_ids.to(dev),
                              d_mask.to(dev), **given).item()
        return last_loss

    started = time.perf_counter()
    # the checkpoint resumed from is the run's last one: a finished run resumed writes none
    step = loop.run(Steps(train_step, "train-autoencoder", shown=lambda loss: round(loss, 4),
                          diverged=lambda value, done: diverged(value, done, out, CHECKPOINT_FILE,
                                                                args.learning_rate),
                          checkpoint=checkpoint, checkpointing_steps=args.checkpointing_steps),
                    reporter, start=start, saved=start)
    train_seconds = time.perf_counter() - started
    if not group.is_main:  # the main process scores and saves the model
        group.wait()
        return core, None

    scores = None
    core.eval()
    if held_texts:
        reporter.log(f"reconstructing {len(held_texts)} held-out texts")
        outputs = reconstruct(core, held_texts, args.eval_batch_size)
        scores = reconstruction_scores(held_texts, outputs)
    core.config.extra = {
        "data": {"source": rows.source, "split": rows.split, "column": rows.column,
                 "rows": len(rows.texts), "digest": rows.digest()},
        "training": {"steps": step, "max_minutes": args.max_minutes, "batch_size": args.batch_size,
                     "learning_rate": args.learning_rate, "seed": args.seed,
                     "mixed_precision": args.mixed_precision,
                     "final_loss": last_loss, "resumed_from_step": start or None,
                     "seconds": round(train_seconds, 1)},
        "reconstruction": scores.as_dict() if scores else None,
    }
    core.to("cpu")
    save_final(core, out)
    group.wait()
    return core, scores


def _check_same_tokenizers(model: LatentAutoencoder) -> None:
    """Every process of a launch built its tokenizers from the same texts: refuse to train
    if they differ (the ranks would feed the shared model different token ids)."""
    import hashlib
    import json

    from accelerate.utils import gather_object

    vocab = {name: sorted(tok.get_vocab().items())
             for name, tok in (("encoder", model.encoder_tokenizer), ("decoder", model.decoder_tokenizer))}
    digest = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()
    if len(set(gather_object([digest]))) != 1:
        raise RuntimeFailure("the processes of this launch built different tokenizers from the same "
                             "texts; train the autoencoder in one process, then launch encode and train")
