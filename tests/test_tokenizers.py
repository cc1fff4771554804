"""Tokenizers: round trips with Unicode, shared specials, vocabulary limits, saved state."""

import pytest
import torch

from t2t.recipe import load_recipe

TEXTS = ["Grüße aus Köln, sagte die Bäckerin.", "東京は今日も晴れです。", "party time 🎉👍 ok?",
         "naïve café — “quoted” text", "Ünïcödé and plain ASCII 123"] * 4


def make(registry, name, symbols=(), **options):
    cls = registry.get("tokenizers", name)
    recipe = load_recipe({"task": "dates", "tokenizer": {"name": name, **options}})
    tok = cls(recipe.tokenizer, symbols)
    tok.train(TEXTS)
    return tok


@pytest.mark.parametrize("name,options", [("char", {}), ("word", {}),
                                          ("sentencepiece", {"vocab_size": 120, "model_type": "unigram"}),
                                          ("sentencepiece", {"vocab_size": 120, "model_type": "bpe"})])
def test_round_trip_unicode(registry, name, options):
    tok = make(registry, name, **options)
    assert tok.vocab.tokens[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    for text in TEXTS[:5]:
        ids = tok.encode(text)
        assert tok.vocab.unk not in ids, (text, ids)
        assert tok.decode(ids + [tok.vocab.eos, 9, 9]) == text        # decoding stops at </s>


def test_sentencepiece_output_has_single_spaces(registry):
    tok = make(registry, "sentencepiece", vocab_size=120)
    marker = tok.vocab.index("\u2581")                       # the lone word marker, a piece of its own
    assert marker != tok.vocab.unk
    ids = [marker] + tok.encode("plain") + [marker] + tok.encode("text") + [marker]
    assert tok.sp.decode(ids).count("  ") == 1                 # what SentencePiece makes of it alone
    assert tok.decode(ids) == "plain text"


def test_unseen_characters_with_and_without_byte_fallback(registry):
    plain = make(registry, "sentencepiece", vocab_size=120)
    assert plain.vocab.unk in plain.encode("Ω")
    fallback = make(registry, "sentencepiece", vocab_size=400, byte_fallback=True)
    assert fallback.decode(fallback.encode("Ω ∑ 漢")) == "Ω ∑ 漢"


def test_normalisation_is_applied_and_recorded(registry):
    tok = make(registry, "char", lowercase=True)
    assert tok.decode(tok.encode("Cafe\u0301")) == "café"           # NFC, then lower-case
    assert tok.options.lowercase is True


def test_symbols_stay_whole(registry):
    for name in ("char", "word", "sentencepiece"):
        opts = {"vocab_size": 100} if name == "sentencepiece" else {}
        tok = make(registry, name, symbols=("<sep>",), **opts)
        ids = tok.encode("hello <sep> world")
        assert tok.vocab.index("<sep>") in ids


def test_vocabulary_limits(registry):
    tok = make(registry, "word", min_freq=5)
    assert len(tok.vocab) == 4                                   # every word occurs 4 times
    tok = make(registry, "char", max_size=10)
    assert len(tok.vocab) == 10


def test_state_round_trip_through_a_checkpoint_file(registry, tmp_path):
    for name, opts in (("char", {}), ("sentencepiece", {"vocab_size": 100})):
        tok = make(registry, name, **opts)
        torch.save({"tok": tok.state_dict()}, tmp_path / "t.pt")
        state = torch.load(tmp_path / "t.pt", weights_only=True)["tok"]
        again = type(tok).from_state(tok.options, state)
        assert again.vocab == tok.vocab
        assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])


def test_sentencepiece_vocab_size_and_sampling(registry):
    cls = registry.get("tokenizers", "sentencepiece")
    tok = cls(load_recipe({"task": "dates", "tokenizer": {"name": "sentencepiece", "vocab_size": 90,
                                                        "max_sentences": 1000}}).tokenizer)
    tok.train([f"sentence number {i} of many" for i in range(3000)])     # sampled down to 1000
    assert len(tok.vocab) <= 90
    assert tok.decode(tok.encode("sentence number 17 of many")) == "sentence number 17 of many"
