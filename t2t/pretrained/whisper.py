"""Whisper (`model_type: whisper`): speech in, text out. The encoder reads Whisper's log-mel
spectrogram of 30 s of audio (`log_mel`, from the folder's preprocessor_config.json) through two
1-D convolutions with GELU (frames / 2) and a learned position table; pre-norm layers with GELU and
a final layer norm on each side; the key projections have no bias (t2t's fused projections keep a
zero one, which changes nothing: a key bias shifts every score of a query alike, and softmax does
not see it; export leaves it out); the decoder's learned positions, and its embeddings tied to the
output. The tokenizer is the folder's byte-level BPE (`tokenizer.json`); decoding starts from
<|startoftranscript|> with the prompt (language, transcribe or translate, no timestamps) fed before
search, the generation config's suppressed tokens never put out and its begin-suppressed tokens
never first, as transformers' `generate` has them."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Literal

import numpy as np
import torch

from t2t.errors import T2TError
from t2t.options import LanguageTokenizerOptions, option
from t2t.pretrained import mapping
from t2t.pretrained.tokenizer import JsonTokenizer
from t2t.search import Specials

MODEL_TYPES = ("whisper",)
TASK = "speech"                    # the task a folder of this family reads
SIDES = ("target",)                # tokenizer sides: the source is audio
# transformers' WhisperConfig defaults: a config.json saved by it leaves out what equals them
DEFAULTS = {"vocab_size": 51865, "num_mel_bins": 80, "encoder_layers": 4, "encoder_attention_heads": 6,
            "decoder_layers": 4, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536, "encoder_ffn_dim": 1536,
            "d_model": 384, "activation_function": "gelu", "dropout": 0.0, "attention_dropout": 0.0,
            "activation_dropout": 0.0, "max_source_positions": 1500, "max_target_positions": 448,
            "pad_token_id": 50256, "bos_token_id": 50256, "eos_token_id": 50256, "decoder_start_token_id": 50257,
            "tie_word_embeddings": True}
# the feature extractor's defaults (preprocessor_config.json)
FEATURES = {"feature_size": 80, "sampling_rate": 16000, "n_fft": 400, "hop_length": 160, "chunk_length": 30,
            "padding_value": 0.0}


def _c(config: dict):
    return lambda key: config.get(key, DEFAULTS.get(key))


def model_options(config: dict, weights=None) -> dict:
    """TransformerOptions keys that express this config (scale_embedding, which transformers'
    Whisper never applies, is not read)."""
    c = _c(config)
    for side in ("attention_heads", "ffn_dim"):
        if c(f"encoder_{side}") != c(f"decoder_{side}"):
            raise T2TError(f"config.json: encoder_{side} {c(f'encoder_{side}')} and decoder_{side} "
                           f"{c(f'decoder_{side}')} differ, which t2t's Transformer does not express")
    act = c("activation_function")
    if act not in mapping.ACTIVATIONS:
        raise T2TError(f"config.json: activation_function {act!r} is not supported; supported: "
                       f"{', '.join(mapping.ACTIVATIONS)}")
    return {"arch": "transformer", "dim": c("d_model"), "layers": c("encoder_layers"),
            "encoder_layers": c("encoder_layers"), "decoder_layers": c("decoder_layers"),
            "heads": c("encoder_attention_heads"), "ff_dim": c("encoder_ffn_dim"),
            "activation": mapping.ACTIVATIONS[act], "norm": "pre", "positions": "learned", "position_offset": 0,
            "max_positions": c("max_target_positions"), "source_positions": c("max_source_positions"),
            "feature_stem": "conv1d", "embed_scale": False, "tie_output": bool(c("tie_word_embeddings")),
            "share_embeddings": False, "dropout": float(c("dropout")),
            "attention_dropout": float(c("attention_dropout")), "activation_dropout": float(c("activation_dropout"))}


def feature_settings(files: dict[str, bytes]) -> dict:
    conf = json.loads(files["preprocessor_config.json"].decode("utf-8"))
    return {**FEATURES, **{k: conf[k] for k in FEATURES if k in conf}}


def data_options(files: dict[str, bytes], config: dict) -> dict:
    """The speech task's `data:` keys a folder fixes: Whisper's features (its rate, mel bins, window
    and hop), without t2t's CMVN (Whisper scales its own) or VTLP (which warps t2t's filterbanks).
    Speed perturbation, dither and SpecAugment apply as to any speech recipe."""
    f = feature_settings(files)
    if int(f["feature_size"]) != int(_c(config)("num_mel_bins")):
        raise T2TError(f"preprocessor_config.json: feature_size {f['feature_size']} differs from config.json's "
                       f"num_mel_bins {_c(config)('num_mel_bins')}")
    rate = int(f["sampling_rate"])
    return {"features": "whisper", "n_mels": int(f["feature_size"]), "sample_rate": rate,
            "frame_ms": 1000.0 * int(f["n_fft"]) / rate, "hop_ms": 1000.0 * int(f["hop_length"]) / rate,
            "window": "hann", "n_mfcc": 13, "cmvn": False, "cmvn_level": "global", "vtlp": (1.0, 1.0)}


def tokenizer_files(folder) -> dict[str, bytes]:
    names = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
             "added_tokens.json", "normalizer.json", "config.json", "generation_config.json",
             "preprocessor_config.json")
    files = {n: folder.read_bytes(n, required=False) for n in names}
    if files["preprocessor_config.json"] is None:
        folder.file("preprocessor_config.json")       # names the missing file: the features come from it
    if files["tokenizer.json"] is None:
        folder.file("tokenizer.json")
    return {k: v for k, v in files.items() if v is not None}


def table(config: dict) -> list[mapping.Row]:
    c = _c(config)
    rows = mapping._same("src_embed.conv1", "model.encoder.conv1") + mapping._same("src_embed.conv2", "model.encoder.conv2")
    rows += [("src_pos.table", ("model.encoder.embed_positions.weight",), "any"),
             ("tgt_pos.table", ("model.decoder.embed_positions.weight",), "any")]
    rows += mapping.bart_layers(c)
    rows += mapping._same("enc_norm", "model.encoder.layer_norm") + mapping._same("dec_norm", "model.decoder.layer_norm")
    rows.append(("tgt_embed.weight", ("model.decoder.embed_tokens.weight",), "any"))
    tied = bool(c("tie_word_embeddings"))
    rows.append(("out.weight", ("model.decoder.embed_tokens.weight", "proj_out.weight"), "read") if tied
                else ("out.weight", ("proj_out.weight",), "any"))
    return rows


class _ZeroKeyBiases:
    """The folder's weights with a zero bias for each key projection, which Whisper has not."""

    def __init__(self, weights):
        self.weights = weights

    def _shape(self, name: str):
        q = name.replace(".k_proj.bias", ".q_proj.bias")
        return self.weights[q].shape if q in self.weights else None

    def __contains__(self, name: str) -> bool:
        return name in self.weights or (name.endswith(".k_proj.bias") and self._shape(name) is not None)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self.weights:
            return self.weights[name]
        q = self.weights[name.replace(".k_proj.bias", ".q_proj.bias")]
        return torch.zeros_like(q)

    def keys(self):
        return self.weights.keys()


def weights_to_t2t(weights, config: dict):
    return mapping.to_t2t(_ZeroKeyBiases(weights), table(config))


def weights_from_t2t(state: dict, config: dict) -> dict:
    out = mapping.from_t2t(state, table(config))
    return {k: v for k, v in out.items() if not k.endswith(".k_proj.bias")}


# --------------------------------------------------------------------------- the tokenizer


@dataclasses.dataclass(frozen=True, kw_only=True)
class WhisperTokenizerOptions(LanguageTokenizerOptions):
    mode: Literal["transcribe", "translate"] = option("transcribe", help="Whisper's task: transcribe (the "
                                                      "speech's own language) or translate (into English)")


class WhisperTokenizer(JsonTokenizer):
    """A Whisper folder's tokenizer.json (targets only: the source is audio). A target is its
    prompt (the language's token where the model has languages, transcribe or translate, no
    timestamps) and the text; the prompt goes before search as the decoder's prompt."""

    name = "whisper"
    Options = WhisperTokenizerOptions
    DEFAULTS = DEFAULTS

    def _build(self) -> None:
        super()._build()
        gen = self.generation_config()
        self.languages = {code.strip("<|>"): int(i) for code, i in (gen.get("lang_to_id") or {}).items()}
        self.tasks = {k: int(v) for k, v in (gen.get("task_to_id") or {}).items()}
        self.no_timestamps = gen.get("no_timestamps_token_id")
        conf = self.json_file("tokenizer_config.json")
        lang = conf.get("language") or gen.get("language")
        self.default_lang = {"target": lang.strip("<|>") if isinstance(lang, str) else None}

    def languages_to_detect(self, target_lang: str = "") -> dict[str, int]:
        return dict(self.languages) if self.languages and not (target_lang or self.lang) else {}

    def prompt(self, target_lang: str = "") -> tuple[int, ...]:
        """The decoder prompt after <|startoftranscript|>, as transformers builds it."""
        out = []
        if target_lang and not self.languages:
            self.language_id(target_lang)                        # names the problem: no language codes
        if self.languages:
            lang = target_lang or self.lang
            if not lang:
                raise T2TError(f"tokenizer.target_lang: the speech's language is needed to train (decoding finds "
                               f"it); the model's languages: {', '.join(sorted(self.languages))}")
            out.append(self.language_id(lang))
            mode = getattr(self.options, "mode", "transcribe")
            if mode not in self.tasks:
                raise T2TError(f"tokenizer.mode: {mode!r}: the model's generation config has no such task "
                               f"(it has: {', '.join(self.tasks) or 'none'})")
            out.append(self.tasks[mode])
        if self.no_timestamps is not None:
            out.append(int(self.no_timestamps))
        return tuple(out)

    def encode(self, text: str) -> list[int]:
        return list(self.prompt()) + self.backend.encode(text, add_special_tokens=False).ids

    def specials(self, target_lang: str = "") -> Specials:
        gen = self.generation_config()
        v = self.vocab
        return Specials(bos=v.bos, eos=v.eos, pad=v.pad, unk=v.unk,
                        banned=tuple(int(t) for t in gen.get("suppress_tokens") or ()),
                        prompt=self.prompt(target_lang),
                        banned_first=tuple(int(t) for t in gen.get("begin_suppress_tokens") or ()))


Tokenizer = WhisperTokenizer


def decode_defaults(gen: dict, prompt: int) -> dict:
    """transformers' short-form Whisper `generate`: max_length counts the start token and the
    prompt."""
    most = int(gen.get("max_new_tokens") or int(gen.get("max_length") or 448) - 1 - prompt)
    return {"max_len_b": max(1, most)}


# --------------------------------------------------------------------------- the front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0), 200.0 * m / 3.0)


@functools.cache
def mel_filters(n_mels: int, n_fft: int, rate: int, top: float = 8000.0) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters, equally spaced on Slaney's mel scale from 0 Hz
    to `top`, each scaled to unit area (Slaney's normalisation), as Whisper's feature extractor
    builds them."""
    bins = np.linspace(0, rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(top), n_mels + 2))
    width = np.diff(edges)
    rise = (bins[:, None] - edges[None, :-2]) / width[None, :-1]
    fall = (edges[None, 2:] - bins[:, None]) / width[None, 1:]
    filters = np.maximum(0.0, np.minimum(rise, fall)) * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return torch.from_numpy(filters).float()


def log_mel(samples: torch.Tensor, n_mels: int = 80, rate: int = 16000, n_fft: int = 400, hop: int = 160,
            seconds: int = 30, dither: float = 0.0, generator: torch.Generator | None = None,
            trim: bool = False) -> torch.Tensor:
    """Whisper's features of audio samples (T,) at `rate`: padded with silence (or cut) to
    `seconds`, a Hann-windowed power spectrogram, mel filters, log10 (floored at 1e-10), floored
    8 below the utterance's maximum, then (x + 4) / 4. Returns (frames, n_mels), frames =
    seconds * rate / hop; with `trim`, only the frames the audio reaches: every later one is the
    recording's silence, which Whisper's stem puts back (`t2t.models.frontend.Conv1dStem.fill`).
    Dither, where asked, is added to the audio's own samples."""
    n = seconds * rate
    x = samples.float()[:n]
    if dither:
        x = x + dither * torch.randn(x.shape, generator=generator)
    reached = min(n // hop, -(-(x.shape[0] + n_fft // 2) // hop))          # frames whose window meets audio
    x = torch.nn.functional.pad(x, (0, n - x.shape[0]))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = spec[:, :-1].abs() ** 2                                       # (F, frames): the last frame dropped
    mel = (mel_filters(n_mels, n_fft, rate).T @ power).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.max() - 8.0)
    out = ((mel + 4.0) / 4.0).T.contiguous()
    return out[:reached].clone() if trim else out            # (a copy: a view would save all 3000)
