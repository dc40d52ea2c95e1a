"""The standing comparison (benchmarks/ar_comparison.py): how AG News text is cleaned, that the
corpus splits keep the scored rows out of training (test and dev alike), that every system is
drawn at several sampling seeds into the JSON the issue fixes, and that a rerun resumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "ar_comparison.py"
_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("ar_comparison", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("raw,clean", [
    ("America #39;s top diplomat", "America's top diplomat"),
    ("support for a  #39;fully functioning #39; democracy", "support for a 'fully functioning' democracy"),
    ("Barack Obama Gets  #36;1.9 Million", "Barack Obama Gets $1.9 Million"),
    ("Darfur issue &lt;b&gt;...&lt;/b&gt;. Sudanese", "Darfur issue ... . Sudanese"),
    ("obstacle to\\U.N. approval", "obstacle to U.N. approval"),
    ("AT&amp;T said", "AT&T said"),
])
def test_ag_news_cleaning(compare, raw, clean):
    assert compare.clean_ag_news(raw) == clean


def _csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def test_scored_rows_never_train(compare, tmp_path):
    _csv(tmp_path / "e2e" / "trainset.csv", "mr,ref", [f"mr,ref {i}" for i in range(100)])
    _csv(tmp_path / "ag_news" / "train.csv", "class_index,title,description",
         [f"1,Title {i},Text #39;s {i}" for i in range(100)])
    _csv(tmp_path / "ag_news" / "test.csv", "class_index,title,description",
         [f"2,Test {i},Body {i}" for i in range(7)])
    e2e_test, e2e_dev = (compare.corpus_texts("e2e", s, tmp_path) for s in ("test", "dev"))
    assert e2e_test["refs"] == [f"ref {i}" for i in range(0, 100, 20)]  # SOURCE.md: i % 20 == 0
    assert e2e_dev["refs"] == [f"ref {i}" for i in range(10, 100, 20)]
    assert len(e2e_test["train"]) == 95 and len(e2e_dev["train"]) == 90  # dev holds out its rows too
    for texts in (e2e_test, e2e_dev):
        assert set(texts["refs"]).isdisjoint(texts["train"])
    ag_test, ag_dev = (compare.corpus_texts("ag_news", s, tmp_path) for s in ("test", "dev"))
    assert ag_test["refs"] == [f"Test {i}. Body {i}" for i in range(7)]  # test.csv, title. description
    assert ag_test["human"] == [f"Title {i}. Text's {i}" for i in range(0, 100, 20)]
    assert len(ag_test["train"]) == 95 and set(ag_test["human"]).isdisjoint(ag_test["train"])
    assert ag_dev["refs"] == [f"Title {i}. Text's {i}" for i in range(10, 100, 20)]
    assert set(ag_dev["refs"]).isdisjoint(ag_dev["train"]) and len(ag_dev["train"]) == 90


def test_ar_sequences_fit_the_positions_with_a_topic_token(compare):
    from ldlm.autoencoder.tokenizer import train_tokenizer

    texts = ["word " * 400, "short text"]  # the first is longer than any position table
    tok = train_tokenizer(texts, 300)
    topic = tok.convert_tokens_to_ids(tok.eos_token)  # any id stands for a topic token here
    for prefix in ([[]] * 2, [[topic]] * 2):
        ids = compare.ar_sequences(tok, texts, prefix, 32)
        assert max(len(x) for x in ids) == 32  # the long text cut to fit, topic token or not
        assert all(x[0] == tok.bos_token_id and x[-1] == tok.eos_token_id for x in ids)
        assert all(x[1:1 + len(p)] == p for x, p in zip(ids, prefix, strict=True))
        assert len(ids[1]) < 32  # a short text is not padded or cut


# ---- sampling seeds, the JSON, resuming ----------------------------------------------------
FIELDS = {"mauve", "div", "mem", "copy", "lm_ppl", "reconstruction_bleu", "ms_per_sample", "params", "cpu_s"}
NAMES = ["The Eagle", "Aromi", "The Mill", "Zizzi", "Cotto", "The Phoenix", "Fitzbillies", "Strada"]
FOODS = ["Italian", "French", "Chinese", "Indian", "English", "Japanese", "fast", "Thai"]
PLACES = ["in the city centre", "by the river", "near the station", "in Cambridge", "near Burger King"]
TEXTS = [f"{n} serves {f} food {p}." for n in NAMES for f in FOODS for p in PLACES]  # 320 distinct


def _corpus(tmp_path: Path) -> Path:
    """A tiny E2E-shaped corpus: 320 texts, 16 of them (i % 20 == 0) held out."""
    data = tmp_path / "data"
    _csv(data / "e2e" / "trainset.csv", "mr,ref", [f'"mr {i}","{t}"' for i, t in enumerate(TEXTS)])
    return data


class Fake:
    """A system that 'generates' N training texts picked with the sampling seed, and counts calls."""

    def __init__(self, pool, offset=0):
        self.pool, self.offset, self.calls = pool, offset, []

    def __call__(self, seed):
        import random

        self.calls.append(seed)
        texts = random.Random(seed + self.offset).sample(self.pool, 8)
        return {"texts": texts, "seconds": 0.08, "topics": None}


def _fake_run(compare, tmp_path, *extra):
    work = tmp_path / "work"
    a = compare.parser().parse_args(["--corpus", "e2e", "--num-samples", "8", "--seeds", "2",
                                     "--results", str(tmp_path / "out.json"), *extra])
    paths = compare.prepare("e2e", "test", work, _corpus(tmp_path))
    train = compare.lines(paths["train"])
    fakes = {"ldlm": Fake(train), "control": Fake(train, 1000), "gpt2": Fake(train, 2000)}
    return a, work, paths, fakes, lambda: compare.compare(a, work, work, paths, {k: (work, f) for k, f in
                                                                                   fakes.items()})


def test_five_sampling_seeds_give_five_mauve_values_from_different_texts(compare, tmp_path):
    import json

    a, work, _, fakes, run = _fake_run(compare, tmp_path)
    out = run()
    assert {k: out[k] for k in ("corpus", "budget_cpu_s", "split", "n")} == {
        "corpus": "e2e", "budget_cpu_s": 1800.0, "split": "test", "n": 8}
    assert list(out["systems"]) == ["ldlm", "control", "gpt2", "human"]
    for name, system in out["systems"].items():
        assert set(system) == FIELDS, name
        assert len(system["mauve"]) == 5 and all(0.0 <= m <= 1.0 for m in system["mauve"]), name
    assert out["systems"]["ldlm"]["ms_per_sample"] == pytest.approx(10.0)  # 0.08 s / 8 texts
    assert out["systems"]["human"]["ms_per_sample"] is None  # and nothing trained: no files
    assert json.loads((tmp_path / "out.json").read_text()) == out
    assert json.loads((work / "compare.json").read_text()) == out
    for name, fake in fakes.items():
        assert fake.calls == [1, 2, 3, 4, 5]
        sets = [json.loads((work / "samples" / f"{name}-n8-seed{s}.json").read_text())["texts"]
                for s in range(1, 6)]
        assert len({tuple(t) for t in sets}) == 5, name  # five different sets of texts
    # every system at one seed meets the same yardstick draws; the draws differ between seeds
    scores = json.loads((work / "scores.json").read_text())["results"]
    assert [r["seeds"] for r in scores["ldlm"]] == [r["seeds"] for r in scores["gpt2"]] == [
        [100 * s, 100 * s + 1] for s in range(1, 6)]
    assert "± " in (work / "table.md").read_text()


def test_an_interrupted_scoring_resumes(compare, tmp_path):
    a, work, _, fakes, run = _fake_run(compare, tmp_path, "--sampling-seeds", "3")
    first = run()
    for fake in fakes.values():
        fake.calls.clear()
    (work / "samples" / "gpt2-n8-seed2.json").unlink()  # killed while drawing seed 2's GPT-2 texts
    (work / "scores" / "control-n8-seed3.json").unlink()  # and before scoring seed 3's control
    before = {p: p.stat().st_mtime_ns for p in (work / "scores").iterdir()}
    again = run()
    assert again == first
    assert fakes["gpt2"].calls == [2] and fakes["ldlm"].calls == fakes["control"].calls == []
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the other scores were read, not redone
    assert (work / "scores" / "control-n8-seed3.json").exists()


def test_the_ar_workdir_must_match(compare, tmp_path):
    import json

    other = tmp_path / "dev"
    (other / "ar").mkdir(parents=True)
    (other / "ar" / "config.json").write_text("{}")
    (other / "args.json").write_text(json.dumps({"corpus": "e2e", "split": "dev", "budget": 1800.0,
                                                 "conditional": False}))
    dev = compare.parser().parse_args(["--corpus", "e2e", "--split", "dev", "--ar-workdir", str(other)])
    compare.check_ar_workdir(dev, other)  # the same corpus, split and budget: its GPT-2 row is ours
    test = compare.parser().parse_args(["--corpus", "e2e", "--ar-workdir", str(other)])
    with pytest.raises(SystemExit, match="split='dev'"):
        compare.check_ar_workdir(test, other)
    with pytest.raises(SystemExit, match="no trained GPT-2"):
        compare.check_ar_workdir(dev, tmp_path)


def test_the_whole_comparison_on_tiny_models_resumes_without_training(compare, tmp_path, monkeypatch):
    """Both systems trained (a few steps of tiny models), drawn at two sampling seeds from the
    trained models and scored; a rerun trains nothing and draws nothing. Nothing here depends
    on what the tiny models write."""
    import json

    tiny = {"autoencoder": {"size": "tiny", "max_steps": 3, "max_length": 24},
            "train": {"size": "tiny", "max_steps": 3, "batch_size": 32}, "adapt": {"max_steps": 2}}
    argv = ["--corpus", "e2e", "--data", str(_corpus(tmp_path)), "--workdir", str(tmp_path / "w"),
            "--budget", "60", "--num-samples", "6", "--sampling-seeds", "2", "--seeds", "1",
            "--ar-max-steps", "3", "--results", str(tmp_path / "out.json"), "--ldlm", json.dumps(tiny)]
    out = compare.main(argv)
    assert list(out["systems"]) == ["ldlm", "control", "gpt2", "human"]
    assert all(set(s) == FIELDS and len(s["mauve"]) == 2 for s in out["systems"].values())
    ldlm, gpt2 = out["systems"]["ldlm"], out["systems"]["gpt2"]
    assert ldlm["params"] > 0 and ldlm["cpu_s"] > 0 and ldlm["reconstruction_bleu"] is not None
    assert gpt2["params"] > 0 and gpt2["cpu_s"] > 0
    assert json.loads((tmp_path / "w" / "ar_budget.json").read_text())["steps"] == 3
    stages = json.loads((tmp_path / "w" / "ldlm_budget.json").read_text())
    assert list(stages) == ["autoencoder", "encode", "train", "adapt"]  # an adapt stage comes last
    assert (tmp_path / "w" / "ldlm" / "adapted" / "config.json").exists()
    for name in ("ldlm", "control", "gpt2"):
        for seed in (1, 2):
            drawn = json.loads((tmp_path / "w" / "samples" / f"{name}-n6-seed{seed}.json").read_text())
            assert drawn["seed"] == seed and len(drawn["texts"]) == 6

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun must reuse what is done")

    import ldlm.adapt
    import ldlm.autoencoder.train
    import ldlm.encode
    import ldlm.train

    for module, name in [(ldlm.autoencoder.train, "train_autoencoder"), (ldlm.encode, "encode_dataset"),
                         (ldlm.train, "train_diffusion"), (ldlm.adapt, "adapt_decoder"),
                         (compare, "ar_model"),
                         (compare, "generate_ldlm"), (compare, "generate_ar")]:
        monkeypatch.setattr(module, name, refuse)
    assert compare.main(argv) == out


def test_an_interrupted_gpt2_resumes_from_its_checkpoint(compare, tmp_path, monkeypatch):
    """Killed after its step-2 checkpoint, the GPT-2's training resumes there on a rerun and
    ends with the weights of a run never interrupted (same data order, optimiser and RNG)."""
    import json

    import torch
    from safetensors.torch import load_file

    import ldlm.autoencoder.tokenizer as tokenizer

    tiny = json.dumps({"autoencoder": {"size": "tiny", "max_length": 24}})

    def args(work):
        return compare.parser().parse_args([
            "--corpus", "e2e", "--data", str(_corpus(tmp_path)), "--workdir", str(work), "--budget", "100000",
            "--ar-max-steps", "4", "--ar-checkpointing-steps", "2", "--ldlm", tiny])

    def train(work):
        a = args(work)
        compare.train_ar(a, compare.prepare("e2e", "test", work, a.data), work)

    train(tmp_path / "whole")
    pad_rows, calls = tokenizer.pad_rows, []

    def killed_at_step_3(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return pad_rows(*a, **k)

    monkeypatch.setattr(tokenizer, "pad_rows", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut")
    assert not (tmp_path / "cut" / "ar" / "config.json").exists()
    monkeypatch.setattr(tokenizer, "pad_rows", pad_rows)
    train(tmp_path / "cut")
    record = json.loads((tmp_path / "cut" / "ar_budget.json").read_text())
    assert record["resumed_from_step"] == 2 and record["steps"] == 4
    whole = load_file(tmp_path / "whole" / "ar" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "ar" / "model.safetensors")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)


@pytest.mark.parametrize("ldlm, folder", [({}, "autoencoder"), ({"adapt": {}}, "adapted"),
                                          ({"adapt": {"max_steps": 5}}, "adapted")])
def test_an_adapt_stage_with_its_defaults_is_decoded_from(compare, tmp_path, ldlm, folder):
    assert compare.ldlm_recipe({}) == compare.RECIPE
    assert compare.ldlm_recipe({"adapt": None, "ae_share": 0.6}) == {"ae_share": 0.6}  # null drops a part
    from types import SimpleNamespace

    a = SimpleNamespace(ldlm=ldlm, autoencoder=None)
    assert compare.ldlm_autoencoder_dir(a, tmp_path) == tmp_path / "ldlm" / folder


def test_an_adapt_stage_takes_its_share_from_the_denoiser(compare, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import ldlm.adapt
    import ldlm.autoencoder.train
    import ldlm.encode
    import ldlm.train

    given = {}
    monkeypatch.setattr(ldlm.autoencoder.train, "train_autoencoder",
                        lambda rows, out, config, args, reporter: given.setdefault("ae", args.max_minutes))
    monkeypatch.setattr(ldlm.encode, "encode_dataset", lambda *args, **kw: None)
    monkeypatch.setattr(ldlm.train, "train_diffusion",
                        lambda store, run, args, reporter: given.setdefault("train", args.max_minutes))
    monkeypatch.setattr(ldlm.adapt, "adapt_decoder", lambda run, out, args, autoencoder, reporter:
                        given.setdefault("adapt", args.max_minutes))
    (tmp_path / "train.txt").write_text("a text\nanother text\n")
    for ldlm_opts, train, adapt in (({}, 30.0, None), ({"adapt": {}}, 25.0, 30.0),
                                    ({"adapt": {}, "adapt_share": 0.5}, 15.0, 30.0)):
        given.clear()
        work = tmp_path / str(len(ldlm_opts))
        work.mkdir()
        a = SimpleNamespace(ldlm=ldlm_opts, budget=1800.0, autoencoder=None, conditional=False)
        compare.train_ldlm(a, {"train": tmp_path / "train.txt"}, work)
        assert given["ae"] == 15.0  # AE_SHARE of 30 minutes
        assert given["train"] == pytest.approx(train, abs=0.05)  # minus the stages' few CPU-ms
        if adapt is None:
            assert "adapt" not in given
        else:  # the rest of the budget: here all of it, the mocked stages spend none
            assert given["adapt"] == pytest.approx(adapt, abs=0.05)


def test_lm_ppl_scores_each_drawn_set_under_the_training_texts_model(tmp_path, capsys):
    import json

    from ldlm.fluency import NgramLM

    spec = importlib.util.spec_from_file_location("lm_ppl", _PATH.parent / "lm_ppl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train = ["the eagle is a pub near the river", "the mill serves cheap food", "a pub near the mill"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "samples").mkdir()
    sets = {"ldlm-n2-seed1": ["the eagle is a pub", "near the river"],
            "ldlm-n2-seed2": ["river the near pub", "food cheap the"], "gpt2-n2-seed1": ["the mill"]}
    for name, texts in sets.items():
        (tmp_path / "samples" / f"{name}.json").write_text(json.dumps({"texts": texts}))
    out = module.main(tmp_path)
    lm = NgramLM.fit(train, order=3)
    assert out["ldlm"] == [lm.perplexity(sets["ldlm-n2-seed1"]), lm.perplexity(sets["ldlm-n2-seed2"])]
    assert out["ldlm"][1] > out["ldlm"][0]  # scrambled word order reads worse
    assert out["gpt2"] == [lm.perplexity(["the mill"])] and "gpt2:" in capsys.readouterr().out
