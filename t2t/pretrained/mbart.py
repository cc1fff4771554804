"""mBART-50 (`model_type: mbart`, tokenizer MBart50Tokenizer): BART's parts (learned positions read
from row 2, a layer norm over embeddings, GELU, a fixed output bias) in pre-norm layers with a final
layer norm on each side; the tokenizer (`tokenizer.json`) puts the language's code first and </s>
last (`[de_DE] text </s>`), the decoder starts from </s> and the target language's code is forced
first. mBART-cc25 folders, whose targets end with </s> and then the language code, are refused."""

from __future__ import annotations

from t2t.errors import T2TError
from t2t.options import LanguageTokenizerOptions
from t2t.pretrained import bart, mapping
from t2t.pretrained.tokenizer import JsonTokenizer

MODEL_TYPES = ("mbart",)
DEFAULTS = {**bart.DEFAULTS, "decoder_start_token_id": 2}
TABLE = dict(final_norms=True, learned_positions=True, embed_norm=True)


def _c(config: dict):
    return lambda key: config.get(key, DEFAULTS.get(key))


def model_options(config: dict, weights=None) -> dict:
    return {**bart.model_options(config), **mapping.bart_options(_c(config)), "norm": "pre"}


def tokenizer_files(folder) -> dict[str, bytes]:
    files = bart.tokenizer_files(folder)
    conf = folder.read_json("tokenizer_config.json") or {}
    if not str(conf.get("tokenizer_class", "MBart50")).startswith("MBart50"):
        raise T2TError(f"tokenizer_config.json: {conf.get('tokenizer_class')} (mBART-cc25, whose targets end with "
                       f"</s> and then the language code) is not supported; mBART-50 folders are")
    return files


def weights_to_t2t(weights, config: dict):
    return mapping.to_t2t(weights, mapping.bart_table(_c(config), **TABLE))


def weights_from_t2t(state: dict, config: dict) -> dict:
    return mapping.from_t2t(state, mapping.bart_table(_c(config), **TABLE))


class MBart50Tokenizer(JsonTokenizer):
    """An mBART-50 folder's tokenizer.json, one side; its language codes (en_XX ...) are among its
    special tokens."""

    name = "mbart50"
    Options = LanguageTokenizerOptions
    DEFAULTS = DEFAULTS
    LANGUAGES = r"[a-z]{2}_[A-Z]{2}"
    DEFAULT_SOURCE_LANG = "en_XX"


Tokenizer = MBart50Tokenizer
