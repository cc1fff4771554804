"""`t2t export --format ctranslate2`: the exported model decodes as t2t does; what cannot be
exported is refused before anything is written."""

import json

import pytest

from t2t.cli import main
from t2t.errors import T2TError
from t2t.export import export
from t2t.pipeline import load
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train

ctranslate2 = pytest.importorskip("ctranslate2", reason="CTranslate2 is not installed (pip install 't2t[export]')")


def ct2_greedy(folder, pipe, sources, max_len):
    translator = ctranslate2.Translator(str(folder), device="cpu", intra_threads=2)
    vocab = pipe.src_tok.vocab.tokens
    batch = [[vocab[i] for i in pipe.src_tok.encode(s)] for s in sources]
    out = translator.translate_batch(batch, beam_size=1, max_decoding_length=max_len)
    ids = pipe.tgt_tok.vocab.ids
    return [[ids[t] for t in r.hypotheses[0]] for r in out]


def t2t_greedy(pipe, sources, max_len):
    opts = pipe.decode_options(beam=1, max_len_a=0.0, max_len_b=max_len + 1, precision="fp32")
    return [h[0].tokens for h in pipe.search(sources, opts)]


def test_exported_model_decodes_as_t2t(toy_transformer, tmp_path, capsys):
    run, examples = toy_transformer
    assert main(["export", str(run), str(tmp_path / "ct2")]) == 0
    assert "exported" in capsys.readouterr().out
    pipe = load(run, device="cpu")
    sources = [e.source for e in examples]
    ours = t2t_greedy(pipe, sources, 14)
    theirs = ct2_greedy(tmp_path / "ct2", pipe, sources, 14)
    assert ours == theirs
    assert sum(pipe.detokenize(t) == e.target for t, e in zip(theirs, examples)) > 0.8 * len(examples)
    defaults = json.loads((tmp_path / "ct2" / "decoding.json").read_text())
    # the recipe's max_len_b 14 counts </s>, CTranslate2's max_decoding_length does not
    assert defaults["translate_batch"]["beam_size"] == 1 and defaults["translate_batch"]["max_decoding_length"] == 13
    # int8 weights through CTranslate2's own quantization: close to the float model
    export(run, tmp_path / "ct2-int8", quantization="int8")
    int8 = ct2_greedy(tmp_path / "ct2-int8", pipe, sources, 14)
    assert sum(a == b for a, b in zip(int8, ours)) >= 0.9 * len(sources)
    with pytest.raises(T2TError, match="exists"):
        export(run, tmp_path / "ct2")


@pytest.mark.parametrize("variant,tokenizer", [
    (dict(norm="post", positions="learned", activation="gelu", tie_output=False, encoder_layers=2, decoder_layers=1),
     {"name": "word"}),
    (dict(norm="pre", share_embeddings=True, heads=4), {"name": "word", "shared": True}),
    (dict(), {"name": "sentencepiece", "vocab_size": 40, "shared": True}),
])
def test_export_variants_of_the_transformer(tmp_path, registry, variant, tokenizer):
    """Random weights (a few updates), so every layer's mapping shows in the outputs."""
    recipe = tiny_recipe("reverse", "transformer", output_dir=str(tmp_path / "run"),
                         model={"dropout": 0.0, **variant}, tokenizer=tokenizer,
                         train={"max_steps": 3, "validate_every": 3, "valid_max_sentences": 0})
    train(load_recipe(recipe), overwrite=True)
    export(tmp_path / "run", tmp_path / "ct2")
    pipe = load(tmp_path / "run", device="cpu")
    sources = [e.source for e in pipe.task.examples("test")[:20]]
    assert t2t_greedy(pipe, sources, 12) == ct2_greedy(tmp_path / "ct2", pipe, sources, 12)
    if tokenizer["name"] == "sentencepiece":          # the user's side: SentencePiece pieces in and out
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "ct2" / "source.spm"))
        out = ctranslate2.Translator(str(tmp_path / "ct2")).translate_batch(
            [sp.encode(s, out_type=str) for s in sources], beam_size=1, max_decoding_length=12)
        assert [sp.decode(r.hypotheses[0]) for r in out] == [pipe.detokenize(t) for t in t2t_greedy(pipe, sources, 12)]


@pytest.mark.parametrize("arch,model,why", [
    ("rnn", {}, "model.arch 'rnn' cannot be exported"),
    ("transformer", {"copy": True}, "model.copy"),
])
def test_export_refuses_what_ctranslate2_cannot_express(tmp_path, registry, arch, model, why):
    recipe = tiny_recipe("reverse", arch, output_dir=str(tmp_path / "run"), model=model,
                         tokenizer={"name": "char", "shared": bool(model.get("copy"))},
                         train={"max_steps": 1, "validate_every": 1, "valid_max_sentences": 0})
    train(load_recipe(recipe), overwrite=True)
    with pytest.raises(T2TError, match=why):
        export(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_export_refuses_an_unknown_format(toy_transformer, tmp_path):
    run, _ = toy_transformer
    with pytest.raises(T2TError, match="unknown format 'onnx'"):
        export(run, tmp_path / "out", format="onnx")
