"""Conditional generation: condition stores, conditional training with condition dropout,
classifier-free guidance, MBR selection, and the errors for bad conditions."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ldlm.cli import app
from ldlm.conditions import ConditionSpec, known_slot_values, slot_errors, slot_values, tokenize_condition
from ldlm.errors import InputError
from ldlm.guidance import Guided, drop_conditions
from ldlm.mbr import MBRArgs, mbr_pick
from ldlm.run import load_run
from ldlm.sample import Conditions, SamplingArgs, iter_samples, sample
from ldlm.store import LatentStore
from ldlm.train import TrainArgs, train_diffusion
from tests.conftest import CORPUS, one_line_error, read_jsonl

runner = CliRunner()
TINY_MLP = {"widths": [32, 16], "time_dim": 16}
TINY_TF = {"width": 16, "layers": 1, "heads": 2, "time_dim": 8, "condition_layers": 1}
FAST = dict(size="tiny", batch_size=16, lr_warmup_steps=1, eval_samples=4, eval_inference_steps=2,
            save_samples_epochs=1000, save_model_epochs=1000)


def _label(text: str) -> str:
    return "animal" if any(w in text for w in ("cat", "dog", "eagle")) else "other"


def _mr(text: str) -> str:
    return f"name[{text.split()[0]}], size[{'long' if len(text) > 20 else 'short'}]"


@pytest.fixture(scope="session")
def cond_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cond") / "rows.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "mr"])
        for t in CORPUS:
            w.writerow([t, _label(t), _mr(t)])
    return path


def _encode(tiny_ae, cond_csv, store: Path, column: str, ctype: str) -> Path:
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    rows = load_texts(str(cond_csv), condition_column=column)
    encode_dataset(rows, tiny_ae, store, batch_size=8, chunk_rows=16, condition_type=ctype,
                   condition_column=column)
    return store


@pytest.fixture(scope="session")
def label_store(tmp_path_factory, tiny_ae, cond_csv) -> Path:
    return _encode(tiny_ae, cond_csv, tmp_path_factory.mktemp("cond") / "label.zarr", "label", "label")


@pytest.fixture(scope="session")
def text_store(tmp_path_factory, tiny_ae, cond_csv) -> Path:
    return _encode(tiny_ae, cond_csv, tmp_path_factory.mktemp("cond") / "text.zarr", "mr", "text")


@pytest.fixture(scope="session")
def label_run(tmp_path_factory, label_store) -> Path:
    out = tmp_path_factory.mktemp("cond") / "label_run"
    train_diffusion(label_store, out, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), conditional=True,
                                                max_steps=4, **FAST))
    return out


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, text_store) -> Path:
    out = tmp_path_factory.mktemp("cond") / "text_run"
    train_diffusion(text_store, out, TrainArgs(arch="transformer", denoiser=dict(TINY_TF),
                                               conditional=True, max_steps=4, **FAST))
    return out


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory, label_store) -> Path:
    out = tmp_path_factory.mktemp("cond") / "plain_run"
    train_diffusion(label_store, out, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), max_steps=2, **FAST))
    return out


def _clusters(path: Path, rows: int = 256) -> Path:
    """Synthetic latents (2, 4): class 'up' around +1.5, class 'down' around -1.5."""
    rng = np.random.default_rng(0)
    spec = ConditionSpec.build(["up", "down"], "label", "label")
    store = LatentStore.create(str(path), rows=rows, latent_shape=(2, 4), chunk_rows=64, attributes={
        "latent_space": "fake-space", "autoencoder": "/no/ae", "condition": spec.to_dict()})
    labels = np.array(["up", "down"] * (rows // 2))
    sign = np.where(labels == "up", 1.0, -1.0)[:, None, None]
    x = (sign * 1.5 + 0.3 * rng.normal(size=(rows, 2, 4))).astype("f4")
    for c in range(store.num_chunks):
        a, b = store.chunk_bounds(c)
        store.write_chunk(c, x[a:b], ["t"] * (b - a), np.zeros(b - a), spec.encode(list(labels[a:b])),
                          list(labels[a:b]))
    store.finalize()
    return path


# ----- encoding ---------------------------------------------------------------------------------
def test_slot_tokens_and_words():
    assert tokenize_condition("name[The Eagle], customer rating[5 out of 5]") == [
        "name[The Eagle]", "customer rating[5 out of 5]"]
    assert tokenize_condition("just words, here") == ["just", "words", ",", "here"]
    spec = ConditionSpec.build(["a[x], b[y]", "a[z]"], "mr", "text")
    ids = spec.encode(["a[z], b[y]", "a[new]"])
    assert ids.shape == (2, 2) and ids[1, 0] == 2  # <unk> for an unseen slot value
    assert spec.null(1)[0, 0] == 1 and (spec.null(1)[0, 1:] == 0).all()
    assert ConditionSpec.from_dict(spec.to_dict()) == spec


def test_label_store_round_trip(label_store):
    store = LatentStore.open(label_store)
    spec = store.condition_spec
    assert spec.type == "label" and spec.labels == ["animal", "other"]
    ids = store.read_conditions()
    texts = store.read_texts()
    assert ids.shape == (store.rows,)
    assert [spec.labels[i] for i in ids] == [_label(t) for t in texts]
    assert store.read_condition_texts()[:3] == [_label(t) for t in texts[:3]]
    from ldlm.info import describe

    assert describe(str(label_store))["condition"].endswith("(2 labels)")


def test_text_store_round_trip(text_store):
    store = LatentStore.open(text_store)
    spec = store.condition_spec
    assert spec.type == "text" and spec.max_length == 2
    ids = store.read_conditions()
    assert ids.shape == (store.rows, 2) and (ids >= 3).all()  # every slot known, none padded
    assert store.read_condition_texts()[0] == _mr(store.read_texts()[0])
    from ldlm.info import describe

    assert describe(str(text_store))["condition"].endswith("(text, up to 2 tokens)")


# ----- guidance ---------------------------------------------------------------------------------
def _sample(run_dir, conditions=None, scale=1.0, n=6):
    run = load_run(run_dir)
    return np.concatenate(list(iter_samples(run, n, SamplingArgs(num_inference_steps=4, scheduler="ddim",
                                                                 seed=3),
                                            conditions=conditions, guidance_scale=scale)))


def test_noise_scale_one_is_plain_sampling_and_zero_is_deterministic(text_run):
    run = load_run(text_run)
    spec = ConditionSpec.from_dict(run.meta["condition"])
    cond = spec.encode([_mr(t) for t in CORPUS[:6]])

    def draw(seed, scale, conditions=cond):
        args = SamplingArgs(num_inference_steps=4, scheduler="ddim", seed=seed, noise_scale=scale)
        return np.concatenate(list(iter_samples(run, len(conditions), args, conditions=conditions)))

    np.testing.assert_array_equal(draw(3, 1.0), _sample(text_run, cond, 1.0))
    np.testing.assert_array_equal(draw(3, 0.0), draw(4, 0.0))  # no noise: the seed is irrelevant
    assert not np.allclose(draw(3, 0.0), draw(3, 1.0))
    same = spec.encode([_mr(CORPUS[0])] * 64)  # one condition: a smaller scale, a tighter spread
    assert draw(3, 0.3, same).std(0).mean() < draw(3, 1.0, same).std(0).mean()
    with pytest.raises(InputError, match="--noise-scale -0.5"):
        SamplingArgs(num_inference_steps=2, scheduler="ddim", noise_scale=-0.5).check()


def test_cli_noise_scale_is_recorded_and_zero_ignores_the_seed(text_run, tmp_path):
    outs = []
    for seed in ("1", "2"):
        out = str(tmp_path / f"{seed}.ldlm")
        r = runner.invoke(app, ["sample", str(text_run), "--condition", _mr(CORPUS[0]), "--num-samples",
                                "2", "--num-inference-steps", "3", "--scheduler", "dpm-solver",
                                "--noise-scale", "0", "--seed", seed, "--out", out])
        assert r.exit_code == 0, r.stderr
        r = runner.invoke(app, ["decode", out, "--format", "jsonl", "--temperature", "0"])
        assert r.exit_code == 0, r.stderr
        outs.append([x["text"] for x in read_jsonl(r.stdout)])
    assert outs[0] == outs[1] and outs[0][0] == outs[0][1]
    from ldlm.latent_file import read_header

    with open(tmp_path / "1.ldlm", "rb") as fh:
        assert read_header(fh, "1.ldlm").extra["noise_scale"] == 0.0


@pytest.mark.parametrize("which", ["label_run", "text_run"])
def test_guidance_zero_is_unconditional_and_one_is_conditional(which, request):
    run_dir = request.getfixturevalue(which)
    run = load_run(run_dir)
    spec = ConditionSpec.from_dict(run.meta["condition"])
    values = ["animal"] * 6 if spec.type == "label" else [_mr(t) for t in CORPUS[:6]]
    cond = spec.encode(values)
    uncond = _sample(run_dir)  # no condition: the learned null condition
    np.testing.assert_array_equal(_sample(run_dir, cond, 0.0), uncond)
    plain = _sample(run_dir, cond, 1.0)
    guided = _sample(run_dir, cond, 3.0)
    assert not np.allclose(plain, uncond) and not np.allclose(guided, plain)
    # W = 1 is the conditional model alone: the same as calling it with the condition
    model = run.model
    x, t = torch.randn(6, *run.latent_shape), torch.full((6,), 500)
    c = torch.from_numpy(cond).long()
    g = Guided(model, c, model.null_condition(6, "cpu"), 1.0)
    torch.testing.assert_close(g(x, t), model(x, t, cond=c))
    g3 = Guided(model, c, model.null_condition(6, "cpu"), 3.0)
    u, k = model(x, t), model(x, t, cond=c)
    torch.testing.assert_close(g3(x, t), u + 3.0 * (k - u), rtol=1e-4, atol=1e-5)


def test_condition_dropout_trains_the_null_condition(tmp_path):
    from accelerate.utils import set_seed

    from ldlm.denoisers import build_denoiser

    store = _clusters(tmp_path / "c.zarr", rows=64)
    null_rows = {}
    for p in (0.0, 0.5):
        out = tmp_path / f"run{p}"
        train_diffusion(store, out, TrainArgs(arch="mlp", denoiser=dict(TINY_MLP), conditional=True,
                                              condition_dropout=p, max_steps=5, ema_decay=0.0,
                                              **{**FAST, "lr_warmup_steps": 0}))
        run = load_run(out)
        null_rows[p] = run.model.label.weight[-1].detach().clone()
        set_seed(42)
        fresh = build_denoiser("mlp", run.model.config)
        init = fresh.label.weight[-1].detach()
    torch.testing.assert_close(null_rows[0.0], init)  # never dropped: the null row is untrained
    assert not torch.allclose(null_rows[0.5], init)


def test_drop_conditions_rate():
    gen = torch.Generator().manual_seed(0)
    cond = torch.zeros(4000, dtype=torch.long)
    dropped = drop_conditions(cond, torch.tensor([7]), 0.1, gen)
    assert set(dropped.unique().tolist()) == {0, 7}
    assert 0.08 < (dropped == 7).float().mean() < 0.12
    assert drop_conditions(cond, torch.tensor([7]), 0.0, gen) is cond


@pytest.mark.parametrize("film", [False, True])
def test_class_conditional_model_separates_two_clusters(tmp_path, film):
    store = _clusters(tmp_path / "c.zarr")
    out = tmp_path / "run"
    train_diffusion(store, out, TrainArgs(
        arch="mlp", size="tiny", denoiser={"widths": [64, 32], "time_dim": 32, "film": film},
        conditional=True,
        objective="x0", max_steps=300, batch_size=32, learning_rate=3e-3, lr_warmup_steps=10,
        ema_decay=0.99, eval_samples=4, eval_inference_steps=2, save_samples_epochs=10000,
        save_model_epochs=10000))
    run = load_run(out)
    spec = ConditionSpec.from_dict(run.meta["condition"])
    for label, sign in (("up", 1), ("down", -1)):
        args = SamplingArgs(num_inference_steps=20, scheduler="ddim", seed=0)
        x = np.concatenate(list(iter_samples(run, 40, args, conditions=spec.encode([label] * 40),
                                             guidance_scale=2.0)))
        frac = float((np.sign(x.mean(axis=(1, 2))) == sign).mean())
        assert frac >= 0.9, (label, frac)


# ----- the command line -------------------------------------------------------------------------
def test_cli_encode_train_sample_decode_text_conditions(tmp_path, tiny_ae, cond_csv):
    store, run, lat = tmp_path / "s.zarr", tmp_path / "run", tmp_path / "x.ldlm"
    r = runner.invoke(app, ["encode", str(cond_csv), "--autoencoder", str(tiny_ae), "--store", str(store),
                            "--condition-column", "mr", "--condition-type", "text", "--batch-size", "8"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["train", str(store), "--out", str(run), "--arch", "transformer", "--size",
                            "tiny", "--conditional", "--condition-dropout", "0.2", "--max-steps", "3",
                            "--batch-size", "8", "--eval-samples", "2", "--eval-inference-steps", "2"])
    assert r.exit_code == 0, r.stderr
    conds = ["name[the], size[short]", "name[a], size[long]"]
    r = runner.invoke(app, ["sample", str(run), "--condition", conds[0], "--condition", conds[1],
                            "--num-samples", "2", "--num-inference-steps", "3", "--scheduler", "ddim",
                            "--guidance-scale", "2", "--mbr", "3", "--rerank-slots", "--out", str(lat)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["decode", str(lat), "--format", "jsonl", "--temperature", "0"])
    assert r.exit_code == 0, r.stderr
    rows = read_jsonl(r.stdout)
    assert [x["condition"] for x in rows] == [conds[0]] * 2 + [conds[1]] * 2
    assert all(x["mbr_candidates"] == 3 and x["text"] == x["mbr_text"] for x in rows)


def test_slot_errors_count_missing_and_foreign_values():
    mr = "name[Alimentum], area[city centre], near[Burger King]"
    assert slot_values(mr) == ["Alimentum", "city centre", "Burger King"]
    assert slot_values("a plain text") == []
    spec = ConditionSpec.build([mr, "name[The Eagle], area[riverside], food[Italian]"], "mr", "text")
    known = known_slot_values(spec)
    assert known == {"alimentum", "city centre", "burger king", "the eagle", "riverside", "italian"}
    assert slot_errors("Alimentum is near Burger King in the City Centre.", mr, known) == 0
    # misses the name and Burger King, states two values of other conditions
    assert slot_errors("The Eagle is an Italian place near the city centre.", mr, known) == 4
    assert slot_errors("Alimentums are near Burger Kings", mr, known) == 3  # whole words only


def test_mbr_pick_takes_the_consensus():
    cands = ["the cat sat on the mat", "a dog barked loudly", "the cat sat on a mat",
             "the cat sat on the mat ."]
    assert mbr_pick(cands) in (0, 2, 3) and mbr_pick(["only"]) == 0


def test_cli_label_file(label_run, tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("animal\n\nother\n")
    lat = tmp_path / "x.ldlm"
    r = runner.invoke(app, ["sample", str(label_run), "--condition-file", str(f), "--num-samples", "2",
                            "--num-inference-steps", "2", "--out", str(lat)])
    assert r.exit_code == 0, r.stderr
    from ldlm.latent_file import read_frames, read_header

    with open(lat, "rb") as fh:
        header = read_header(fh, "x")
        meta = [m for _, ms in read_frames(fh, header, "x") for m in ms]
    assert [m["condition"] for m in meta] == ["animal", "animal", "other", "other"]
    assert header.extra["guidance_scale"] == 1.0


@pytest.mark.parametrize("extra,needle", [
    (["--condition", "plant"], "unknown condition label 'plant'"),
    (["--condition", "animal", "--guidance-scale", "-1"], "--guidance-scale -1.0"),
    (["--condition", "animal", "--guidance-scale", "nan"], "--guidance-scale nan"),
    (["--guidance-scale", "2"], "--guidance-scale applies to conditional sampling"),
    (["--condition", "animal", "--mbr", "0"], "--mbr 0"),
    (["--condition", "animal", "--mbr", "2", "--rerank-slots"], "--rerank-slots needs"),
    (["--rerank-slots"], "--rerank-slots applies to conditional sampling"),
    (["--condition", "animal", "--condition-file", "x.txt"], "both given"),
    (["--condition", "animal", "--noise-scale", "-1"], "--noise-scale -1.0 must be a finite number"),
    (["--noise-scale", "inf"], "--noise-scale inf must be a finite number"),
    (["--init-text", "a cat", "--noise-scale", "0.5"], "--noise-scale 0.5 applies to sampling from noise"),
])
def test_cli_bad_conditions(label_run, tmp_path, extra, needle):
    r = runner.invoke(app, ["sample", str(label_run), "--num-inference-steps", "2",
                            "--out", str(tmp_path / "x.ldlm"), *extra])
    assert needle in one_line_error(r, 2)
    assert not (tmp_path / "x.ldlm").exists()


def test_condition_for_an_unconditional_run(plain_run, tmp_path):
    r = runner.invoke(app, ["sample", str(plain_run), "--condition", "animal", "--num-inference-steps", "2",
                            "--out", str(tmp_path / "x.ldlm")])
    assert "is unconditional" in one_line_error(r, 2)


def test_conditional_on_a_store_without_conditions(tiny_store, tmp_path):
    r = runner.invoke(app, ["train", str(tiny_store), "--out", str(tmp_path / "r"), "--conditional",
                            "--max-steps", "1"])
    assert "has no conditions" in one_line_error(r, 2)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kw,needle", [
    ({"arch": "unet2d"}, "--conditional works with --arch"),
    ({"condition_dropout": 1.0}, "--condition-dropout 1.0"),
    ({"condition_dropout": math.nan}, "--condition-dropout nan"),
])
def test_bad_train_arguments(kw, needle):
    with pytest.raises(InputError, match=needle):
        TrainArgs(conditional=True, **kw).check()


def test_unknown_label_from_python(label_run):
    from ldlm.conditions import encode_conditions

    run = load_run(label_run)
    with pytest.raises(InputError, match="unknown condition label 'plant'.*animal, other"):
        encode_conditions(run.condition_spec, ["plant"], str(run.path))
    with pytest.raises(InputError, match="unknown condition label 'plant'.*animal, other"):
        sample(run, SamplingArgs(num_inference_steps=2), conditions=Conditions(["plant"]))


# ----- reranking MBR candidates with a condition classifier -----------------------------------
@pytest.fixture(scope="session")
def text_classifier(tmp_path_factory, text_store):
    from ldlm.classifier import ClassifierArgs, train_classifier

    out = tmp_path_factory.mktemp("cond") / "clf"
    train_classifier(text_store, out, ClassifierArgs(epochs=3, min_count=1))
    return out


@pytest.mark.parametrize("weight,fluency", [(0.0, 0.0), (1e6, 0.0), (0.5, 10.0), (0.0, 1e6)])
def test_reranker_adds_its_log_likelihood_to_the_mbr_score(text_run, tiny_ae, text_classifier, weight,
                                                         fluency):
    from ldlm.autoencoder import load_autoencoder
    from ldlm.classifier import ConditionClassifier
    from ldlm.mbr import mbr_scores

    run, ae = load_run(text_run), load_autoencoder(tiny_ae, device="cpu")
    clf = ConditionClassifier.from_pretrained(text_classifier)
    conds, mbr = ["name[the], size[short]", "name[a], size[long]"], 4
    kw = dict(num_inference_steps=2, scheduler="ddim", batch_size=8)
    chosen = [m["mbr_text"] for _, meta in sample(
        run, SamplingArgs(num_samples=1, **kw), conditions=Conditions(conds), autoencoder=tiny_ae,
        mbr=MBRArgs(mbr, reranker=text_classifier, reranker_weight=weight,
                    fluency_weight=fluency)).frames for m in meta]
    # the same candidates, drawn without MBR (same seed, batch and condition rows)
    x = np.concatenate([x for x, _ in sample(run, SamplingArgs(num_samples=mbr, **kw),
                                             conditions=Conditions(conds)).frames])
    cands = ae.generate(torch.from_numpy(x), temperature=0.0)
    spec = ConditionSpec.from_dict(run.meta["condition"])
    for i, cond in enumerate(conds):
        group = cands[i * mbr:(i + 1) * mbr]
        ll = clf.log_likelihood(group, spec.encode([cond] * mbr))
        score = mbr_scores(group) + weight * ll + fluency * clf.fluency(group)
        assert chosen[i] == group[int(np.argmax(score))]
        if weight == fluency == 0:
            assert chosen[i] == group[mbr_pick(group)]  # weight 0 is plain MBR


def test_cli_sample_with_reranker(text_run, text_store, tmp_path):
    clf, lat = tmp_path / "clf", tmp_path / "x.ldlm"
    r = runner.invoke(app, ["train-classifier", str(text_store), "--out", str(clf), "--epochs", "2",
                            "--min-count", "1"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["sample", str(text_run), "--condition", "name[the], size[short]",
                            "--num-samples", "2", "--num-inference-steps", "2", "--mbr", "3",
                            "--reranker", str(clf), "--reranker-weight", "2", "--out", str(lat)])
    assert r.exit_code == 0, r.stderr
    from ldlm.latent_file import read_frames, read_header

    with open(lat, "rb") as fh:
        header = read_header(fh, "x")
        meta = [m for _, ms in read_frames(fh, header, "x") for m in ms]
    assert header.extra["reranker"] == str(clf) and header.extra["reranker_weight"] == 2.0
    assert header.extra["fluency_weight"] == 10.0  # the default
    assert len(meta) == 2 and all(m["mbr_candidates"] == 3 for m in meta)


@pytest.mark.parametrize("extra,needle", [
    (["--condition", "name[the], size[short]", "--reranker", "CLF"], "--reranker chooses among --mbr"),
    (["--reranker", "CLF"], "--reranker applies to conditional sampling"),
    (["--condition", "name[the], size[short]", "--mbr", "2", "--reranker", "CLF",
      "--reranker-weight", "-1"], "--reranker-weight -1.0 must be"),
    (["--condition", "name[the], size[short]", "--mbr", "2", "--reranker", "nowhere"],
     "classifier 'nowhere' does not exist"),
    (["--condition", "name[the], size[short]", "--mbr", "2", "--reranker", "CLF",
      "--fluency-weight", "nan"], "--fluency-weight nan must be a finite number"),
])
def test_cli_bad_reranker(text_run, text_store, tmp_path, extra, needle):
    from ldlm.classifier import ClassifierArgs, train_classifier

    clf = tmp_path / "clf"
    train_classifier(text_store, clf, ClassifierArgs(epochs=1, min_count=1))
    extra = [str(clf) if e == "CLF" else e for e in extra]
    r = runner.invoke(app, ["sample", str(text_run), "--num-inference-steps", "2",
                            "--out", str(tmp_path / "x.ldlm"), *extra])
    assert needle in one_line_error(r, 2)
    assert not (tmp_path / "x.ldlm").exists()


def test_reranker_of_another_condition_vocabulary(label_run, text_classifier):
    run = load_run(label_run)
    with pytest.raises(InputError, match="another vocabulary than run"):
        MBRArgs(4, reranker=text_classifier, reranker_weight=1.0).check(run.condition_spec, str(run.path))


def test_fluency_weight_needs_the_classifiers_language_model(text_run, text_store, tmp_path):
    from ldlm.classifier import ClassifierArgs, train_classifier

    run = load_run(text_run)
    train_classifier(text_store, tmp_path / "c", ClassifierArgs(epochs=1, min_count=1, lm_order=0))
    spec, name = run.condition_spec, str(run.path)
    with pytest.raises(InputError, match="--fluency-weight 10.0 needs the classifier's language model"):
        MBRArgs(4, reranker=tmp_path / "c", reranker_weight=0.5, fluency_weight=10.0).check(spec, name)
    # no fluency term: no model needed
    MBRArgs(4, reranker=tmp_path / "c", reranker_weight=0.5, fluency_weight=0.0).check(spec, name)
