"""Pretrained folders against `transformers`, on tiny random models it builds offline: logits, loss,
greedy and beam outputs with their scores, tokenizer ids, export round trips, fine-tuning."""

import dataclasses
import functools
import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers (a test-only reference) is not installed: "
                                   "pip install 't2t[test]'")

import hf_folders  # noqa: E402
from t2t.errors import T2TError  # noqa: E402
from t2t.loss import sequence_loss  # noqa: E402
from t2t.pipeline import load  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses"),
              pytest.mark.filterwarnings("ignore:Using the model-agnostic default")]

SOURCES = ["über Straße café dog", "hello", "日本語 добрый día ça Øre smörgåsbord", "the cat", "a b c d e f g",
           "zebra fish chips 123 4.5", "it's «quoted»", "naïve", "ñandú ñandú ñandú the world and a dog runs",
           ">>fra<< hello world"]
TARGETS = ["the cat runs", "ευχαριστώ world and chips", "a", "Straße über alles", "fish", "123", "día", "ça",
           "hello world", "le monde"]


FAMILIES = {  # builder, transformers' model class, the details each test below breaks once
    "marian": (hf_folders.marian, "MarianMTModel", [{"output_bias": False}, {"positions": "sinusoidal"},
                                                    {"activation": "gelu"}, {"embed_scale": False}, {"norm": "pre"}]),
    # (a seed and </s> bias whose outputs end at different lengths)
    "bart": (functools.partial(hf_folders.bart, seed=1, eos_bias=4.0), "BartForConditionalGeneration",
             [{"output_bias": False}, {"embed_scale": True}, {"embed_norm": False}, {"activation": "relu"},
              {"norm": "pre"}]),
    "m2m100": (hf_folders.m2m100, "M2M100ForConditionalGeneration",
               [{"positions": "sinusoidal_halves"}, {"position_offset": 0}, {"norm": "post"}, {"embed_scale": False},
                {"activation": "gelu"}]),
    "nllb": (functools.partial(hf_folders.nllb, seed=1, eos_bias=5.0), "M2M100ForConditionalGeneration",
             [{"positions": "sinusoidal"}, {"position_offset": 1}, {"norm": "post"}, {"embed_scale": False},
              {"activation": "silu"}]),
    "t5": (hf_folders.t5, "T5ForConditionalGeneration",
           [{"attention_scale": True}, {"norm_type": "layer"}, {"relative_max_distance": 64}, {"output_scale": False},
            {"activation": "gelu"}]),
    "flan_t5": (functools.partial(hf_folders.t5, flan=True), "T5ForConditionalGeneration",
                [{"attention_scale": True}, {"norm_type": "layer"}, {"relative_max_distance": 64},
                 {"output_scale": True}, {"activation": "relu"}]),
    "mt5": (functools.partial(hf_folders.t5, flan=True, mt5=True), "MT5ForConditionalGeneration",
            [{"attention_scale": True}, {"norm_type": "layer"}, {"relative_max_distance": 64},
             {"output_scale": True}, {"activation": "relu"}]),
    "mbart50": (hf_folders.mbart50, "MBartForConditionalGeneration",
                [{"output_bias": False}, {"embed_scale": False}, {"embed_norm": False}, {"activation": "relu"},
                 {"norm": "post"}]),
}
TARGET_LANG = {"m2m100": "fr", "nllb": "fra_Latn", "mbart50": "fr_XX"}     # the test folders' target language


class Family:
    """A tiny random folder of a family and transformers' own model and tokenizer of it."""

    def __init__(self, name: str, root):
        build, model_class, self.broken = FAMILIES[name]
        self.name, self.folder = name, build(root / name)
        self.model_class = getattr(transformers, model_class)
        self.reference = self.model_class.from_pretrained(self.folder).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)

    def __iter__(self):                         # folder, reference, tokenizer = family
        return iter((self.folder, self.reference, self.tokenizer))

    def generate_args(self) -> dict:
        """What transformers' generate needs beside the folder's generation config: the target
        language's code first, for the families that have languages (t2t forces it itself)."""
        lang = TARGET_LANG.get(self.name)
        return {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids(
            f"__{lang}__" if self.name == "m2m100" else lang)} if lang else {}

    def reference_decode(self, ids) -> str:
        """transformers' decode with skip_special_tokens; for M2M100 the language codes are taken
        out first (transformers 5 leaves them in the text, where t2t, as transformers 4, skips them)."""
        if self.name == "m2m100":
            ids = [i for i in ids if i not in self.tokenizer.lang_code_to_id.values()]
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    return Family(request.param, tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    return Family("marian", tmp_path_factory.mktemp("pretrained"))


def logit_gap(pipe, reference, tokenizer, sources=SOURCES, targets=TARGETS) -> float:
    """Largest difference between t2t's and a transformers model's teacher-forced logits over the
    real (not padding) target positions of a padded batch."""
    batch, dec_in, lengths = teacher_forced(pipe, tokenizer, sources, targets)
    with torch.no_grad():
        ours = pipe.model(batch["input_ids"], lengths, dec_in)
        theirs = reference(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).logits
    return float((ours - theirs)[batch["labels"] != pipe.specials.pad].abs().max())


def teacher_forced(pipe, tokenizer, sources, targets):
    """A padded batch as transformers makes it, and t2t's decoder input for it."""
    batch = tokenizer(sources, text_target=targets, return_tensors="pt", padding=True)
    labels = batch["labels"]
    start = torch.full((len(sources), 1), pipe.specials.bos)
    return batch, torch.cat([start, labels[:, :-1]], 1), batch["attention_mask"].sum(1)


def test_logits_and_loss_equal_transformers(family):
    folder, reference, tokenizer = family
    pipe = load(folder, device="cpu")
    batch, dec_in, lengths = teacher_forced(pipe, tokenizer, SOURCES, TARGETS)
    with torch.no_grad():
        ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        logits = pipe.model(batch["input_ids"], lengths, dec_in)
    real = batch["labels"] != pipe.specials.pad
    assert ref.logits[real].std(-1).mean() > 0.2                # weights large enough for details to show
    assert (logits - ref.logits)[real].abs().max() < 1e-4
    from t2t.data import Batch
    ours = Batch(batch["input_ids"], lengths, dec_in, batch["labels"], list(range(len(SOURCES))))
    with torch.no_grad():
        _, nll = sequence_loss(pipe.model, pipe.model, ours, 0.0, pipe.specials.pad)
    # transformers averages over the label positions (padding included, as its tokenizer pads them)
    masked = batch["labels"].masked_fill(~real, -100)
    with torch.no_grad():
        ref_loss = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=masked).loss
    assert abs(float(nll) / int(real.sum()) - float(ref_loss)) < 1e-5


SEARCHES = [  # beam, nbest, length_penalty, transformers' early_stopping
    (1, 1, 1.0, False), (4, 1, 1.0, False), (4, 2, 2.0, False), (4, 4, 0.5, True), (5, 2, 1.5, "never"),
    (4, 3, 0.0, False)]
STOPS = {False: "heuristic", True: "k_finished", "never": "never"}


@pytest.mark.parametrize("beam,nbest,alpha,stop", SEARCHES)
def test_search_equals_generate(family, beam, nbest, alpha, stop):
    folder, reference, tokenizer = family
    pipe = load(folder, device="cpu")
    batch = tokenizer(SOURCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = reference.generate(**batch, num_beams=beam, num_return_sequences=nbest, length_penalty=alpha,
                                 early_stopping=stop, output_scores=True, return_dict_in_generate=True,
                                 **family.generate_args())
    hyps = pipe.search(SOURCES, pipe.decode_options(beam=beam, nbest=nbest, length_penalty=alpha,
                                                    early_stopping=STOPS[stop]))
    lengths = set()
    for i in range(len(SOURCES)):
        assert len(hyps[i]) == nbest
        for j, h in enumerate(hyps[i]):
            row = out.sequences[i * nbest + j].tolist()[1:]              # after the decoder's start
            tokens = row[: row.index(pipe.specials.eos)] if pipe.specials.eos in row else row
            assert h.tokens == tokens, (i, j)
            lengths.add(len(tokens))
            if beam > 1:
                assert abs(h.score - float(out.sequences_scores[i * nbest + j])) < 1e-4
            assert pipe.detokenize(h.tokens) == family.reference_decode(out.sequences[i * nbest + j].tolist())
    # outputs end at different lengths (where "never" stop and alpha 1.5 favour the longest, all may reach it)
    assert len(lengths) >= 2 or stop == "never", lengths
    assert max(lengths) >= pipe.recipe.decode.max_len_b - 1 or beam > 1, lengths      # and at the limit


def test_tokenizer_ids_equal_on_1000_strings(family):
    folder, _, tokenizer = family
    pipe = load(folder, device="cpu")
    texts = hf_folders.random_strings(1000)
    eos = pipe.specials.eos
    for text in texts:
        assert pipe.src_tok.encode(text) == tokenizer(text)["input_ids"], text
        target = tokenizer(text_target=text)["input_ids"]
        assert pipe.tgt_tok.encode(text) + [eos] == target, text
        assert pipe.tgt_tok.decode(target) == family.reference_decode(target), text


@pytest.mark.parametrize("detail", range(5))
def test_a_detail_broken_shows_in_the_logits(family, detail):
    """The parity above can fail: each of these details alone moves the logits far past 1e-4."""
    from t2t.models.transformer import Transformer
    folder, reference, tokenizer = family
    pipe = load(folder, device="cpu")
    model = Transformer(dataclasses.replace(pipe.model.options, **family.broken[detail]), pipe.model.spec)
    model.load_state_dict(pipe.model.state_dict(), strict=False)
    model.eval()
    batch, dec_in, lengths = teacher_forced(pipe, tokenizer, SOURCES, TARGETS)
    with torch.no_grad():
        ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        logits = model(batch["input_ids"], lengths, dec_in)
    assert (logits - ref.logits)[batch["labels"] != pipe.specials.pad].abs().max() > 1e-2


def test_export_hf_round_trip_is_bit_equal(family, tmp_path):
    from t2t.export import export
    folder, _, tokenizer = family
    out = export(folder, tmp_path / "back", format="hf")
    for path in folder.iterdir():
        if path.name != "model.safetensors":
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), "pt") as f, safe_open(str(folder / "model.safetensors"), "pt") as g:
        assert f.metadata() == {"format": "pt"} and set(f.keys()) == set(g.keys())
        for k in g.keys():
            assert torch.equal(f.get_tensor(k), g.get_tensor(k)), k
    again = family.model_class.from_pretrained(out).eval()
    pipe = load(out, device="cpu")
    batch, dec_in, lengths = teacher_forced(pipe, tokenizer, SOURCES, TARGETS)
    with torch.no_grad():
        assert torch.equal(again(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).logits,
                           family.model_class.from_pretrained(folder).eval()(
                               **{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).logits)
    with pytest.raises(T2TError, match="exists"):
        export(folder, out, format="hf")


def test_generate_and_evaluate_take_a_folder(family, tmp_path, capsys):
    from t2t.cli import main
    folder, reference, tokenizer = family
    (tmp_path / "in.txt").write_text("\n".join(SOURCES[:3]) + "\n", encoding="utf-8")
    assert main(["generate", "--checkpoint", str(folder), "--input", str(tmp_path / "in.txt"), "--beam", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    batch = tokenizer(SOURCES[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = reference.generate(**batch, num_beams=4, **family.generate_args())
    assert lines == [family.reference_decode(r.tolist()) for r in ref]
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.de").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    (data / "test.en").write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: translation\ndata: {{dir: {data}, source: de, target: en}}\n"
                      f"model: {{pretrained: {folder}}}\nmetrics: [chrf]\noutput_dir: {tmp_path / 'run'}\n")
    assert main(["evaluate", str(recipe), "--checkpoint", str(folder), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "test.report.json").read_text())
    assert report["sentences"] == len(SOURCES) and "chrf" in report["metrics"]


def test_fine_tuning_from_a_recipe_then_exporting(family, tmp_path):
    from t2t.export import export
    from t2t.recipe import load_recipe
    from t2t.trainer import train
    folder, _, tokenizer = family
    data = hf_folders.corpus(tmp_path / "data", {"train": 200, "valid": 20})
    recipe = load_recipe({"task": "translation", "data": {"dir": str(data), "source": "de", "target": "en"},
                          "model": {"pretrained": str(folder), "dropout": 0.1},
                          "train": {"max_steps": 6, "validate_every": 6, "valid_max_sentences": 4, "lr": 1e-3,
                                    "max_tokens": 400, "freeze": ["encoder.0"]},
                          "metrics": ["chrf"], "output_dir": str(tmp_path / "run")})
    assert recipe.model.dim == 32 and recipe.model.dropout == 0.1 and recipe.decode.rules == "transformers"
    before = load(folder, device="cpu").model.state_dict()
    summary = train(recipe)
    assert summary["step"] == 6
    tuned = load(tmp_path / "run", device="cpu")
    after = tuned.model.state_dict()
    assert not torch.equal(after["encoder.1.attn.qkv.weight"], before["encoder.1.attn.qkv.weight"])
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("encoder.0."))     # frozen
    if "logit_bias" in before:
        assert torch.equal(after["logit_bias"], before["logit_bias"])     # a fixed bias, as in its source
    out = export(tmp_path / "run", tmp_path / "tuned", format="hf")
    assert logit_gap(tuned, family.model_class.from_pretrained(out).eval(), tokenizer) < 1e-4


def test_bad_folders_and_contradicting_recipes_get_one_message(marian, tmp_path):
    import shutil
    from t2t.recipe import load_recipe
    from t2t.errors import RecipeError
    folder, _, _ = marian

    def broken(name, change):
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        change(copy)
        return copy

    cases = [
        (broken("noweights", lambda d: (d / "model.safetensors").unlink()), "no weights; a pretrained folder holds"),
        (broken("nospm", lambda d: (d / "source.spm").unlink()), "no source.spm"),
        (broken("t5", lambda d: (d / "config.json").write_text(json.dumps(
            {**json.loads((folder / "config.json").read_text()), "model_type": "gpt2"}))), "model_type 'gpt2' is not "
            "supported; supported: bart, m2m_100, marian, mbart, mt5, t5"),
        (broken("badjson", lambda d: (d / "config.json").write_text("{")), "config.json: not valid JSON"),
        (tmp_path / "absent", "no such"),
    ]
    for path, message in cases:
        with pytest.raises(T2TError, match=message):
            load(path, device="cpu").generate(["hello"])
    extra = broken("extra", lambda d: None)
    from safetensors.torch import load_file, save_file
    w = load_file(str(extra / "model.safetensors"))
    w["model.encoder.layers.9.fc1.weight"] = torch.zeros(1)
    del w["model.decoder.layers.1.fc2.bias"]
    save_file(w, str(extra / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(T2TError, match=r"missing 1: model.decoder.layers.1.fc2.bias; unexpected 1: "
                                       r"model.encoder.layers.9.fc1.weight"):
        load(extra, device="cpu")
    head = "task: translation\ndata: {source: de, target: en}\n"
    for sections, message in [(f"model: {{pretrained: {folder}, dim: 64}}", "recipe.yaml:3 model.dim: '64' "
                               "contradicts the pretrained folder, which sets 32"),
                              (f"model: {{pretrained: {folder}}}\ntokenizer: {{name: sentencepiece}}",
                               "tokenizer.name: 'sentencepiece' contradicts"),
                              (f"model: {{pretrained: {folder}/nothing}}", "no such pretrained model folder"),
                              (f"model: {{pretrained: {folder}}}\ntrain: {{freeze: [encoder], lora: {{rank: 0}}}}",
                               "train.lora.rank: 0 is out of range")]:
        (tmp_path / "recipe.yaml").write_text(head + sections + "\n")
        with pytest.raises(RecipeError, match=message):
            load_recipe(tmp_path / "recipe.yaml")
    with pytest.raises(RecipeError, match="train.lora: adapts a pretrained model"):
        load_recipe(head + "model: {arch: transformer}\ntrain: {lora: {rank: 4}}\n")


def test_lora_trains_only_adapters_and_merged_export_equals_the_adapted_model(family, tmp_path):
    from t2t import checkpoint as ckpt
    from t2t.export import export
    from t2t.recipe import load_recipe
    from t2t.trainer import train
    folder, _, tokenizer = family
    data = hf_folders.corpus(tmp_path / "data", {"train": 200, "valid": 20})
    recipe = load_recipe({"task": "translation", "data": {"dir": str(data), "source": "de", "target": "en"},
                          "model": {"pretrained": str(folder)},
                          "train": {"max_steps": 8, "validate_every": 4, "valid_max_sentences": 4, "lr": 1e-2,
                                    "max_tokens": 400, "lora": {"rank": 4, "alpha": 8, "targets": ["q", "v", "fc1"]}},
                          "metrics": ["chrf"], "output_dir": str(tmp_path / "run")})
    train(recipe)
    base = load(folder, device="cpu").model.state_dict()
    last = ckpt.resolve(tmp_path / "run", "last")
    raw = torch.load(last, weights_only=True)
    assert raw["model"] and all(".lora." in k for k in raw["model"])              # adapters saved small
    assert sum(v.numel() for v in raw["model"].values()) * 3 < sum(v.numel() for v in base.values())
    full = ckpt.load(last)["model"]
    for k, v in base.items():
        assert torch.equal(full[k], v), k                         # the pretrained weights did not move
    assert any(full[k].abs().sum() > 0 for k in full if ".lora.b." in k)       # the adapters did
    tuned = load(tmp_path / "run", device="cpu")                     # adapters merged for decoding
    out = export(tmp_path / "run", tmp_path / "merged", format="hf")
    assert logit_gap(tuned, family.model_class.from_pretrained(out).eval(), tokenizer) < 1e-4
    assert logit_gap(tuned, family.reference, tokenizer) > 1e-3                  # the adapters changed it


def test_exported_to_ctranslate2_decodes_as_t2t(family, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="the export extra is not installed")
    from t2t.export import export
    folder, _, _ = family
    pipe = load(folder, device="cpu")
    out = export(folder, tmp_path / "ct2", format="ctranslate2")
    for name in ("source.spm", "tokenizer.json"):
        if (folder / name).exists():
            assert (out / name).read_bytes() == (folder / name).read_bytes()
    notes = json.loads((out / "decoding.json").read_text())["notes"]
    expected = {"marian": "end it with </s>", "bart": "begin it with <s> and end it with </s>",
                "m2m100": "begin it with __de__ and end it with </s>",
                "nllb": "begin it with deu_Latn and end it with </s>", "t5": "end it with </s>",
                "flan_t5": "end it with </s>", "mt5": "end it with </s>",
                "mbart50": "begin it with de_DE and end it with </s>"}[family.name]
    assert any(n.endswith(expected) for n in notes), notes
    translator = ctranslate2.Translator(str(out), device="cpu")
    tokens = [[pipe.src_tok.vocab.tokens[i] for i in pipe.src_tok.encode(s)] for s in SOURCES]   # specials too
    limit = json.loads((out / "decoding.json").read_text())["translate_batch"]["max_decoding_length"]
    assert limit == pipe.recipe.decode.max_len_b - pipe.specials.forced_eos    # CTranslate2 does not count </s>
    forced = pipe.specials.forced_bos
    prefix = [[pipe.tgt_tok.vocab.tokens[forced]]] * len(tokens) if forced is not None else None
    assert (prefix is not None) == any("target_prefix" in n for n in notes)
    got = translator.translate_batch(tokens, prefix, beam_size=1, max_decoding_length=limit, min_decoding_length=0)
    hyps = pipe.search(SOURCES, pipe.decode_options(beam=1))
    for g, h in zip(got, hyps):
        assert g.hypotheses[0] == [pipe.tgt_tok.vocab.tokens[i] for i in h[0].tokens]


def test_a_folder_is_served(marian):
    httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install 't2t[test]')")
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 't2t[serve]')")
    from t2t.serve import ServeSettings, create_app
    from t2t.serve.app import load_models, running_server
    folder, _, _ = marian
    models = load_models([str(folder)], device="cpu")
    assert list(models) == ["marian"]
    pipe = models["marian"]
    with running_server(create_app(models, ServeSettings())) as url:
        r = httpx.post(f"{url}/v1/generate", json={"inputs": SOURCES[:4], "beam": 4, "nbest": 2}, timeout=30)
        card = httpx.get(f"{url}/v1/models").json()["models"][0]
    assert r.status_code == 200, r.text
    assert [o["hypotheses"][0]["text"] for o in r.json()["outputs"]] == pipe.generate(SOURCES[:4], beam=4)
    assert card["model"]["options"]["pretrained"] == str(folder) and card["decode"]["rules"] == "transformers"


@pytest.mark.slow
def test_every_code_block_of_the_pretrained_docs_runs(tmp_path):
    """docs/pretrained.md against a tiny random stand-in for opus-mt-de-en and a small corpus."""
    from pathlib import Path

    from helpers import environment, run_doc_blocks
    hf_folders.marian(tmp_path / "opus-mt-de-en")
    hf_folders.corpus(tmp_path / "data" / "de-en", {"train": 300, "valid": 20, "test": 20})
    hf_folders.whisper(tmp_path / "whisper-tiny")
    hf_folders.speech_corpus(tmp_path / "data" / "digits", n=16)
    doc = Path(__file__).resolve().parents[1] / "docs" / "pretrained.md"
    assert run_doc_blocks(doc, tmp_path, environment()) >= 10
    assert (tmp_path / "opus-tuned-hf" / "model.safetensors").exists()
    assert (tmp_path / "whisper-tuned-ct2" / "decoding.json").exists()


def test_languages_come_from_the_recipe_and_decode_settings(tmp_path):
    from t2t.recipe import load_recipe
    folder = hf_folders.m2m100(tmp_path / "m2m100")
    recipe = load_recipe({"task": "translation", "data": {"source": "es", "target": "en"},
                          "model": {"pretrained": str(folder)}})
    assert (recipe.tokenizer.source_lang, recipe.tokenizer.target_lang) == ("es", "en")   # data's codes, known
    pipe = load(folder, device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert pipe.src_tok.encode("hello")[0] == tokenizer.get_lang_id("de")              # the folder's default
    hyps = pipe.search(["hello"], pipe.decode_options(source_lang="ja", target_lang="zu"))
    assert hyps[0][0].tokens[0] == tokenizer.get_lang_id("zu")
    reference = transformers.M2M100ForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer.src_lang = "ja"
    out = reference.generate(**tokenizer(["hello"], return_tensors="pt"), forced_bos_token_id=tokenizer.get_lang_id("zu"))
    assert out[0].tolist()[1:len(hyps[0][0].tokens) + 1] == hyps[0][0].tokens
    with pytest.raises(T2TError, match=r"decode.target_lang: unknown language 'frr'; did you mean 'fr'\?"):
        pipe.generate(["hello"], target_lang="frr")
    nllb = hf_folders.nllb(tmp_path / "nllb")
    with pytest.raises(T2TError, match="tokenizer.target_lang: unknown language 'fr'; the model's 4 languages: deu_Latn, eng_Latn, fra_Latn"):
        load_recipe({"task": "translation", "data": {"source": "de", "target": "fr"},
                     "model": {"pretrained": str(nllb)}, "tokenizer": {"target_lang": "fr"}})
    nllb_recipe = load_recipe({"task": "translation", "data": {"source": "de", "target": "fr"},
                               "model": {"pretrained": str(nllb)}, "tokenizer": {"target_lang": "eng_Latn"}})
    assert (nllb_recipe.tokenizer.source_lang, nllb_recipe.tokenizer.target_lang) == ("", "eng_Latn")
    marian = hf_folders.marian(tmp_path / "marian")
    with pytest.raises(T2TError, match="decode.target_lang: 'fr': this model has no language codes"):
        load(marian, device="cpu").generate(["hello"], target_lang="fr")


def test_a_t5_task_prefix_comes_from_the_recipe(tmp_path):
    from t2t.recipe import load_recipe
    folder = hf_folders.t5(tmp_path / "t5")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prefix = "translate English to German: "
    recipe = load_recipe({"task": "translation", "data": {"source": "en", "target": "de"},
                          "model": {"pretrained": str(folder)}, "tokenizer": {"source_prefix": prefix}})
    from t2t import pretrained
    states = pretrained.tokenizer_states(folder, recipe.tokenizer)
    from t2t.pretrained.t5 import T5Tokenizer
    source = T5Tokenizer.from_state(recipe.tokenizer, states["source"])
    target = T5Tokenizer.from_state(recipe.tokenizer, states["target"])
    assert source.encode("hello world") == tokenizer(prefix + "hello world")["input_ids"]
    assert target.encode("hallo Welt") + [1] == tokenizer(text_target="hallo Welt")["input_ids"]   # no prefix


def test_weights_are_read_from_shards_and_from_plain_torch_files(marian, tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file
    folder = marian.folder
    weights = load_file(str(folder / "model.safetensors"))
    expected = load(folder, device="cpu").model.state_dict()
    names = sorted(weights)
    sharded = tmp_path / "sharded"
    shutil.copytree(folder, sharded)
    (sharded / "model.safetensors").unlink()
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in halves.items():
        save_file({k: weights[k] for k in keys}, str(sharded / file), metadata={"format": "pt"})
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in halves.items() for k in keys}}))
    plain = tmp_path / "bin"
    shutil.copytree(folder, plain)
    (plain / "model.safetensors").unlink()
    torch.save(weights, plain / "pytorch_model.bin")
    for other in (sharded, plain):
        got = load(other, device="cpu").model.state_dict()
        assert all(torch.equal(got[k], expected[k]) for k in expected), other.name
    class Code:                                          # a pickled object is refused, not run
        def __reduce__(self):
            return (print, ("ran",))
    torch.save({"x": Code()}, plain / "pytorch_model.bin")
    with pytest.raises(T2TError, match="without running pickled code"):
        load(plain, device="cpu")


def test_export_hf_refuses_a_run_of_t2t_s_own_transformer(toy_transformer, tmp_path):
    from t2t.export import export
    run, _ = toy_transformer
    with pytest.raises(T2TError, match="did not start from a pretrained folder"):
        export(run, tmp_path / "out", format="hf")
    assert not (tmp_path / "out").exists()


def test_t5_refuses_fp16(tmp_path):
    from t2t.errors import RecipeError
    from t2t.recipe import load_recipe
    folder = hf_folders.t5(tmp_path / "t5")
    with pytest.raises(RecipeError, match="train.precision: fp16: T5's activations overflow fp16"):
        load_recipe({"task": "translation", "data": {"source": "en", "target": "de"},
                     "model": {"pretrained": str(folder)}, "train": {"precision": "fp16"}})
