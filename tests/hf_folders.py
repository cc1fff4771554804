"""Tiny pretrained folders built offline by `transformers` for parity tests: random weights at a
large standard deviation (LayerNorm gains 1 + 0.3 N(0, 1)) so that a wrong detail shows in the
logits, and an </s> bias that makes outputs end at different lengths."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

WORDS = ["über", "Straße", "naïve", "café", "日本語", "добрый", "día", "ça", "Øre", "smörgåsbord", "hello",
         "world", "the", "a", "cat", "dog", "runs", "quickly", "zebra", "ευχαριστώ", "مرحبا", "ñandú", "fish",
         "and", "chips", "123", "4.5", "—", "«quoted»", "it's"]
ALPHABET = ("abcdefghijklmnopqrstuvwxyz ÄÖÜäöüßéèêçñøåæœ日本語中文한국어добрыйευχαριστώمرحباעברית🙂👍\t.,;:!?'\"«»"
            "—–-()[]{}0123456789  ")


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def corpus(folder: Path, sizes: dict[str, int], source: str = "de", target: str = "en") -> Path:
    """A small parallel corpus `{split}.{source|target}` in `folder`: the target is the source in
    capitals (something a model can learn)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(sizes.items()):
        lines = sentences(n, 7 + i)
        (folder / f"{split}.{source}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / f"{split}.{target}").write_text("\n".join(s.upper() for s in lines) + "\n", encoding="utf-8")
    return folder


def random_strings(n: int, seed: int = 0) -> list[str]:
    """Strings of non-ASCII text, some with special tokens and a language code written in them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        if i % 50 == 0:
            s = f"{s} </s> {s}"
        if i % 70 == 0:
            s = "<unk>" + s
        if i % 90 == 0:
            s = ">>fra<< " + s
        out.append(s)
    return out


def _spm(texts: list[str], size: int) -> bytes:
    import sentencepiece as spm
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=out, vocab_size=size,
                                   model_type="unigram", character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1,
                                   pad_id=-1, minloglevel=2, hard_vocab_limit=False)
    return out.getvalue()


def randomise(model, std: float = 0.3, seed: int = 0) -> None:
    """Every weight N(0, std), LayerNorm gains 1 + N(0, std); sinusoid tables untouched."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(1 + noise if "layer_norm" in name and name.endswith("weight") else noise)
        for name, b in model.named_buffers():
            if name == "final_logits_bias":
                b.copy_(torch.randn(b.shape, generator=g) * std)


def _model(model_class, config_class, settings: dict, config: dict, seed: int):
    """A transformers model of `settings` updated by `config`, its weights randomised from `seed`."""
    torch.manual_seed(seed)
    model = model_class(config_class(**{**settings, **config}))
    randomise(model, seed=seed)
    return model


def marian(folder: Path, seed: int = 0, eos_bias: float = 3.0, **config) -> Path:
    """A Marian folder as `save_pretrained` writes it: config, generation config, safetensors,
    source/target SentencePiece models, vocab.json, tokenizer_config.json."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src, tgt = _spm(sentences(2000, 1), 120), _spm(sentences(2000, 2), 120)
    (folder / "source.spm").write_bytes(src)
    (folder / "target.spm").write_bytes(tgt)
    import sentencepiece as spm
    vocab = {"</s>": 0, "<unk>": 1, ">>fra<<": 2}
    for model in (src, tgt):
        sp = spm.SentencePieceProcessor(model_proto=model)
        for i in range(sp.get_piece_size()):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json")
                    ).save_pretrained(str(folder))
    v = len(vocab)
    settings = dict(vocab_size=v, decoder_vocab_size=v, d_model=32, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_position_embeddings=64, pad_token_id=v - 1, decoder_start_token_id=v - 1, eos_token_id=0,
                    forced_eos_token_id=0, scale_embedding=True, activation_function="swish", dropout=0.0)
    model = _model(MarianMTModel, MarianConfig, settings, config, seed)
    with torch.no_grad():
        model.final_logits_bias[0, settings["eos_token_id"]] = eos_bias
    model.save_pretrained(str(folder))
    return folder


def _byte_bpe(folder: Path, size: int = 300) -> None:
    """A byte-level BPE (vocab.json, merges.txt) trained on the test sentences, BART's specials first."""
    from tokenizers import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences(2000, 1) + sentences(2000, 2), vocab_size=size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.save_model(str(folder))


def bart(folder: Path, seed: int = 0, eos_bias: float = 3.0, forced_bos: bool = True, **config) -> Path:
    """A BART folder as `save_pretrained` writes it (tokenizer.json among the files); its
    generation config forces <s> first, as bart-large-cnn's does."""
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _byte_bpe(folder)
    BartTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))     # adds tokenizer.json
    v = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    settings = dict(vocab_size=v, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                    dropout=0.0)
    model = _model(BartForConditionalGeneration, BartConfig, settings, config, seed)
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] = eos_bias
    if forced_bos:
        model.generation_config.forced_bos_token_id = model.config.bos_token_id
    model.save_pretrained(str(folder))
    return folder


def m2m100(folder: Path, seed: int = 0, eos_bias: float = 3.0, **config) -> Path:
    """An M2M100 folder as `save_pretrained` writes it: sentencepiece.bpe.model, vocab.json (the
    fairseq dictionary: <s> <pad> </s> <unk> first), its 100 language codes numbered after it."""
    import sentencepiece as spm
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = _spm(sentences(2000, 1) + sentences(2000, 2), 160)
    (folder / "sentencepiece.bpe.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tok = M2M100Tokenizer(str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"), src_lang="de",
                          tgt_lang="fr")
    tok.save_pretrained(str(folder))
    size = len(vocab) + len(tok.lang_code_to_id) + 8                 # the language codes, 8 "madeup words"
    settings = dict(vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                    dropout=0.0, attention_dropout=0.0)
    model = _model(M2M100ForConditionalGeneration, M2M100Config, settings, config, seed)
    with torch.no_grad():                        # no output bias in M2M100: favour </s> through its embedding
        model.model.shared.weight[model.config.eos_token_id] *= eos_bias
    model.save_pretrained(str(folder))
    return folder


NLLB_CODES = ["deu_Latn", "fra_Latn", "eng_Latn", "spa_Latn"]


def nllb(folder: Path, seed: int = 0, eos_bias: float = 3.0, **config) -> Path:
    """An NLLB folder (model_type m2m_100) with a tokenizer.json: a SentencePiece-style BPE trained
    on the test sentences, <s> <pad> </s> <unk> first, and four language codes as special tokens."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = SentencePieceBPETokenizer()
    bpe.train_from_iterator(sentences(2000, 1) + sentences(2000, 2), vocab_size=200, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = NllbTokenizer(vocab=model["vocab"], merges=merges, src_lang="deu_Latn", tgt_lang="fra_Latn",
                        additional_special_tokens=NLLB_CODES)
    tok.save_pretrained(str(folder))
    settings = dict(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                    dropout=0.0, attention_dropout=0.0)
    net = _model(M2M100ForConditionalGeneration, M2M100Config, settings, config, seed)
    with torch.no_grad():
        net.model.shared.weight[net.config.eos_token_id] *= eos_bias
    net.save_pretrained(str(folder))
    return folder


def t5(folder: Path, seed: int = 0, eos_bias: float = 3.0, flan: bool = False, mt5: bool = False, **config) -> Path:
    """A T5 folder (tokenizer.json: a unigram model of the test sentences, <pad> </s> <unk> first, 10
    sentinels); `flan`: Flan-T5's gated GELU and own output layer, with heads of d_kv 6 (4 x 6 is not
    d_model 32), else the original T5's ReLU and tied output."""
    import sentencepiece as spm
    import transformers
    from transformers import T5Tokenizer
    prefix = "MT5" if mt5 else "T5"                 # mT5: its own model type, T5 v1.1's architecture
    T5Config, T5ForConditionalGeneration = (getattr(transformers, prefix + n) for n in ("Config",
                                                                                      "ForConditionalGeneration"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences(2000, 1) + sentences(2000, 2)), model_writer=out,
                                   vocab_size=150, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, minloglevel=2, hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_proto=out.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = T5Tokenizer(vocab=pieces, extra_ids=10)
    tok.save_pretrained(str(folder))
    settings = dict(vocab_size=len(tok) + 6, d_model=32, d_kv=6 if flan else 8, d_ff=64, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                    feed_forward_proj="gated-gelu" if flan else "relu", tie_word_embeddings=not flan,
                    decoder_start_token_id=0)
    model = _model(T5ForConditionalGeneration, T5Config, settings, config, seed)
    with torch.no_grad():
        model.shared.weight[model.config.eos_token_id] *= eos_bias
        if flan:                                 # an output layer of its own, as Flan-T5's
            model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape,
                                                                  generator=torch.Generator().manual_seed(seed)) * 0.3)
    model.save_pretrained(str(folder))
    return folder


def mbart50(folder: Path, seed: int = 0, eos_bias: float = 3.0, **config) -> Path:
    """An mBART-50 folder: a tokenizer.json from a unigram model of the test sentences (<s> <pad>
    </s> <unk> first, then its 52 language codes and <mask>), a tiny MBart model, source de_DE and
    target fr_XX."""
    import sentencepiece as spm
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences(2000, 1) + sentences(2000, 2)), model_writer=out,
                                   vocab_size=150, model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3,
                                   character_coverage=1.0, minloglevel=2, hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_proto=out.getvalue())
    tok = MBart50Tokenizer(vocab=[(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())],
                           src_lang="de_DE", tgt_lang="fr_XX")
    tok.save_pretrained(str(folder))
    settings = dict(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                    dropout=0.0, scale_embedding=True, decoder_start_token_id=2)
    model = _model(MBartForConditionalGeneration, MBartConfig, settings, config, seed)
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] = eos_bias
    model.save_pretrained(str(folder))
    return folder


WHISPER_SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|de|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def whisper(folder: Path, seed: int = 0, eos_bias: float = 6.0, n_mels: int = 80, multilingual: bool = True,
            **config) -> Path:
    """A Whisper folder as `save_pretrained` writes it: a byte-level BPE with <|endoftext|> first and
    Whisper's special tokens after it (tokenizer.json), the feature extractor's preprocessor_config.json,
    and a generation config with languages, tasks, suppressed and begin-suppressed tokens."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperTokenizer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([s.lower() for s in sentences(2000, 1)], vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(folder))
    specials = WHISPER_SPECIALS if multilingual else [t for t in WHISPER_SPECIALS
                                                      if t not in ("<|en|>", "<|de|>", "<|fr|>")]
    tok = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<|endoftext|>",
                           bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.save_pretrained(str(folder))
    WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(str(folder))
    ids = dict(zip(specials, tok.convert_tokens_to_ids(specials)))
    eot, space = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("Ġ")
    suppress = [5, 7, 11, ids["<|startoflm|>"], ids["<|startofprev|>"], ids["<|nocaptions|>"]]
    settings = dict(vocab_size=len(tok), num_mel_bins=n_mels, d_model=32, encoder_layers=2, decoder_layers=2,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_source_positions=1500, max_target_positions=64, pad_token_id=eot, bos_token_id=eot,
                    eos_token_id=eot, decoder_start_token_id=ids["<|startoftranscript|>"], suppress_tokens=suppress,
                    begin_suppress_tokens=[space, eot], dropout=0.0)
    model = _model(WhisperForConditionalGeneration, WhisperConfig, settings, config, seed)
    with torch.no_grad():                  # embeddings tied to the output: favour <|endoftext|> through its row
        model.model.decoder.embed_tokens.weight[eot] *= eos_bias
    gc = model.generation_config
    if multilingual:
        gc.lang_to_id = {t: ids[t] for t in ("<|en|>", "<|de|>", "<|fr|>")}
        gc.task_to_id = {"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]}
    gc.is_multilingual = multilingual
    gc.no_timestamps_token_id = ids["<|notimestamps|>"]
    gc.max_length = 64
    gc.suppress_tokens, gc.begin_suppress_tokens = suppress, [space, eot]
    gc.decoder_start_token_id = ids["<|startoftranscript|>"]
    gc.forced_decoder_ids = None
    gc._from_model_config = False              # as a released folder's: transformers reads it, not the config
    model.save_pretrained(str(folder))
    return folder


def tones(n: int, seed: int = 0, rate: int = 16000) -> list:
    """`n` recordings of one to four seconds: a few tones, a chirp and noise at random levels."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(int(rate * rng.uniform(1.0, 4.0))) / rate
        x = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) for _ in range(3))
        x = x + 0.2 * np.sin(2 * np.pi * (200 + 800 * t) * t) + rng.uniform(0.01, 0.1) * rng.standard_normal(len(t))
        out.append(x.astype(np.float32))
    return out


def write_wav(path: Path, samples, rate: int) -> Path:
    """16-bit mono PCM."""
    import wave

    import numpy as np
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def speech_corpus(folder: Path, n: int = 24, rate: int = 8000) -> Path:
    """A speech task's folder of tones at `rate` (FSDD's 8 kHz by default), two words to learn:
    wav/I.wav and {train,valid,test}.tsv manifests (path, transcript, speaker; 3/4, 1/8, 1/8)."""
    folder = Path(folder)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, a in enumerate(tones(n, seed=7, rate=rate)):
        write_wav(folder / "wav" / f"{i}.wav", a, rate)
        rows.append(f"wav/{i}.wav\t{'zero' if i % 2 else 'one'}\ts{i % 3}")
    cut1, cut2 = n * 3 // 4, n * 7 // 8
    for split, part in (("train", rows[:cut1]), ("valid", rows[cut1:cut2]), ("test", rows[cut2:])):
        (folder / f"{split}.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(part) + "\n")
    return folder
