"""Typed option dataclasses: how recipe sections and plugins declare the keys they accept.

Every recipe section is a frozen dataclass. Plugins declare theirs by subclassing one of the base
option classes below; the recipe validator (`t2t.recipe`) coerces YAML by the declared types and
checks the bounds given with `option(...)`. Cross-field checks go in `check()`, which raises
`OptionError(key, message)`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Literal, Optional


class OptionError(ValueError):
    """A value that is well-typed but not allowed; `key` is the offending field."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def option(default: Any = dataclasses.MISSING, *, min: float | None = None,
           max: float | None = None, help: str = "", factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with bounds and a one-line description.

    `min`/`max` are inclusive bounds checked by the recipe validator; `help` is shown by
    `t2t recipe-keys` and in error hints.
    """
    meta = {"min": min, "max": max, "help": help}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every options dataclass. Types and `option()` bounds are checked whenever one is
    made (a recipe, `dataclasses.replace` in the Python API, a CLI flag, a server request), so
    no surface can pass a value another refuses; cross-field checks go in `check()`."""

    def __post_init__(self) -> None:
        for key, (tp, lo, hi) in _schema(type(self)).items():
            problem = _field_problem(getattr(self, key), tp, lo, hi)
            if problem:
                raise OptionError(key, problem)

    def check(self) -> None:
        """Raise OptionError for values that are well-typed but inconsistent."""


@functools.cache
def _schema(cls: type) -> dict[str, tuple[Any, float | None, float | None]]:
    """Per field of an options class: (declared type, min, max)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.metadata.get("min"), f.metadata.get("max")) for f in dataclasses.fields(cls)}


def _field_problem(value: Any, tp: Any, lo: float | None, hi: float | None) -> str | None:
    """What is wrong with a value for a field of type `tp` within [lo, hi], or None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _field_problem(value, inner[0], lo, hi) if len(inner) == 1 else None
    if origin is Literal:
        return None if value in args else f"{value!r} is not allowed; allowed: {', '.join(map(str, args))}"
    if tp is bool:
        return None if isinstance(value, bool) else f"{value!r} is not a boolean; use true or false"
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{value!r} is not a whole number"
    elif tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{value!r} is not a number"
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
    else:
        return None
    return range_problem(value, lo, hi)


def range_problem(value: float, lo: float | None, hi: float | None, shown: str | None = None) -> str | None:
    """'X is out of range; it must be ...' where `value` is outside [lo, hi], else None."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}"
        return f"{value if shown is None else shown} is out of range; it must be {rng}"
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataOptions(Options):
    """Keys under `data:` common to every task; a task's `Options` subclasses this."""

    dir: Optional[str] = option(None, help="data folder, relative to --data-dir/T2T_DATA or absolute")
    on_error: Literal["fail", "skip"] = option("fail", help="a malformed example stops the run or is skipped and counted")
    max_source_len: Optional[int] = option(None, min=1, help="longest source in tokens (after tokenization)")
    max_target_len: Optional[int] = option(None, min=1, help="longest target in tokens (after tokenization)")
    overlong: Literal["filter", "truncate"] = option("filter", help="what happens to training examples over the limits")
    train_limit: Optional[int] = option(None, min=1, help="use only the first N training examples")
    eval_limit: Optional[int] = option(None, min=1, help="use only the first N examples of evaluation splits")
    valid_from_train: Optional[int] = option(None, min=1, help="hold N training examples out as the valid split "
                                             "(drawn with the seed; whole conversations for dialogue), so that "
                                             "data without a development split of its own keeps its test split "
                                             "out of checkpoint choice")
    prepared_dir: Optional[str] = option(None, help="where prepared (encoded, memory-mapped) splits and trained "
                                         "tokenizers are kept (default: a per-user cache, $T2T_CACHE/prepared or "
                                         "~/.cache/t2t/prepared, see `t2t cache`); runs and machines that share "
                                         "the folder share them")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizerOptions(Options):
    """Keys under `tokenizer:` common to every tokenizer."""

    name: str = option("char", help="tokenizer plugin name")
    shared: bool = option(True, help="one vocabulary for source and target")
    lowercase: bool = option(False, help="lower-case text before tokenizing (recorded, applied to both sides)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanguageTokenizerOptions(TokenizerOptions):
    """The tokenizer keys of a pretrained family with language codes (M2M100, NLLB, mBART)."""

    source_lang: str = option("", help="the sources' language code (e.g. de, or deu_Latn for NLLB; default: "
                              "data.source where the model knows it, else the folder's)")
    target_lang: str = option("", help="the targets' language code (default: data.target where the model knows it)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelOptions(Options):
    """Keys under `model:` common to every architecture."""

    arch: str = option("rnn", help="model architecture plugin name")
    dropout: float = option(0.1, min=0.0, max=0.9, help="dropout probability")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricOptions(Options):
    """Keys of one entry under `metrics:` (a bare name or a mapping with `name`)."""

    name: str = option(help="metric plugin name")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoggerOptions(Options):
    """Keys of one entry under `loggers:` (a bare name or a mapping with `name`)."""

    name: str = option(help="logger plugin name")


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    """The dataclass fields of an options class, by name."""
    return {f.name: f for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One option as every surface shows it (CLI flag, API argument, request field)."""

    name: str
    type: type                      # int, float, bool or str (a Literal's values are str or int)
    optional: bool                  # None is allowed
    default: Any
    min: float | None
    max: float | None
    help: str
    choices: tuple | None           # a Literal's values


def field_infos(cls: type) -> list[FieldInfo]:
    """The scalar fields of an options class, with their types, bounds, defaults and help."""
    out = []
    for f in dataclasses.fields(cls):
        tp, lo, hi = _schema(cls)[f.name]
        optional = False
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            optional = type(None) in typing.get_args(tp)
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = inner[0] if len(inner) == 1 else Any
        choices = None
        if typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
            tp = type(choices[0])
        if tp not in (int, float, bool, str):
            continue
        out.append(FieldInfo(f.name, tp, optional, f.default, lo, hi, f.metadata.get("help", ""), choices))
    return out


def to_plain(obj: Any) -> Any:
    """Options (nested) -> plain dicts/lists/scalars, for saving in runs and checkpoints."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraOptions(Options):
    """Keys under `train.lora:` (low-rank adapters; the model's own weights stay frozen)."""

    rank: int = option(8, min=1, max=4096, help="rank r of each adapter")
    alpha: float = option(16.0, min=0.0, max=1e6, help="adapters are scaled by alpha / rank")
    dropout: float = option(0.0, min=0.0, max=0.9, help="dropout on an adapter's input")
    targets: tuple[Literal["q", "k", "v", "o", "fc1", "fc2"], ...] = option(
        ("q", "v"), help="what is adapted: attention q, k, v (also the parts of fused projections), its output "
        "o, the feed-forward fc1, fc2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainOptions(Options):
    """Keys under `train:`."""

    device: str = option("auto", help="auto | cpu | cuda | cuda:N (the CLI's --device wins)")
    threads: Optional[int] = option(None, min=1, help="CPU threads for torch (default: torch's choice)")
    init_from: Optional[str] = option(None, help="start from another run's weights: its run directory (best "
                                      "checkpoint) or a checkpoint file; only the weights, not its optimizer or step")
    init_only: tuple[str, ...] = option((), help="with init_from: take only these parts (parameter-name prefixes, "
                                        "e.g. [encoder, src_embed]); empty: every part")
    lora: Optional[LoraOptions] = option(None, help="fine-tune low-rank adapters (LoRA) of a pretrained model "
                                         "instead of its weights, e.g. {rank: 8, alpha: 16}; checkpoints hold the "
                                         "adapters, export merges them")
    freeze: tuple[str, ...] = option((), help="parameters not trained, by name prefix (e.g. [encoder, src_embed])")
    seed: Optional[int] = option(None, help="seeds the initial weights, dropout and batch order (default: the "
                                 "recipe's seed). The data split, held-out examples and vocabulary follow the "
                                 "recipe's seed alone, so runs that differ only here can be decoded as an ensemble")
    max_tokens: int = option(4096, min=1, help="tokens per batch (source or target, whichever is larger)")
    max_sentences: Optional[int] = option(None, min=1, help="at most this many examples per batch")
    max_epochs: int = option(10, min=1, help="stop after this many passes over the training data")
    max_steps: Optional[int] = option(None, min=1, help="stop after this many optimizer updates")
    max_time: Optional[float] = option(None, min=0.0, help="stop after this many minutes of training (resumes count)")
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", help="optimizer")
    lr: float = option(1e-3, min=0.0, help="peak learning rate")
    betas: tuple[float, float] = option((0.9, 0.98), help="Adam betas")
    weight_decay: float = option(0.0, min=0.0, help="decoupled weight decay (AdamW)")
    schedule: Literal["constant", "inverse_sqrt", "cosine", "linear", "plateau"] = option(
        "constant", help="learning-rate schedule; cosine and linear decay to min_lr by the end of the run's "
        "budget, max_steps (or max_epochs) or max_time, whichever runs out first")
    warmup: int = option(0, min=0, help="linear warm-up steps")
    min_lr: float = option(0.0, min=0.0, help="floor of the cosine, linear and plateau schedules")
    plateau_factor: float = option(0.5, min=0.0, max=1.0, help="plateau: multiply lr by this when validation stalls")
    plateau_patience: int = option(1, min=0, help="plateau: validations without improvement before lowering lr")
    label_smoothing: float = option(0.0, min=0.0, max=0.99, help="label smoothing of the cross-entropy")
    clip_norm: float = option(1.0, min=0.0, help="gradient norm clipping (0 turns it off)")
    update_freq: int = option(1, min=1, help="accumulate gradients over this many batches per update")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", help="auto: bf16 autocast on CUDA where supported, else fp32 (bf16 on a CPU without native bf16: fp32)")
    compile: bool = option(False, help="torch.compile the model")
    checkpoint_activations: bool = option(False, help="keep only each Transformer layer's input in the forward "
                                          "pass and recompute the rest in the backward pass: less memory (most "
                                          "with long inputs, large batches and LoRA), about a third more compute")
    validate_every: Optional[int] = option(None, min=1, help="validate every N updates (default: each epoch)")
    valid_max_sentences: int = option(300, min=0, help="decode at most this many validation sentences for metrics")
    valid_metric: Optional[str] = option(None, help="metric that picks the best checkpoint (default: the first metric, else loss)")
    valid_beam: int = option(1, min=1, help="beam size of the validation decoding that scores checkpoints (1: greedy, "
                             "the cheapest); the recipe's other decode settings (length penalty, length limits, CTC "
                             "weight) apply as they are. Set it to decode.beam where greedy and beam search rank "
                             "checkpoints differently")
    patience: Optional[int] = option(None, min=1, help="stop after this many validations without improvement")
    keep_best: int = option(1, min=0, help="best checkpoints kept")
    keep_last: int = option(1, min=1, help="most recent checkpoints kept")
    average_best: int = option(0, min=0, help="when training ends, average the weights of the N best checkpoints "
                               "into checkpoints/average.pt, which the run directory then stands for in evaluate "
                               "and generate (the N best are kept whatever keep_best says); 0: no average")
    average_last: int = option(0, min=0, help="as average_best, but the N most recent checkpoints (the N last "
                               "are kept whatever keep_last says): for schedules that decay to the end of the "
                               "run, and for runs without validation")
    validation: bool = option(True, help="false: read no valid split and score no checkpoints; the last "
                              "checkpoint (or the average_last average) stands for the run. For a final run on "
                              "all the data once its settings were chosen with validation")
    log_every: int = option(50, min=1, help="log every N updates")
    tensorboard: bool = option(False, help="also write TensorBoard event files (the `tensorboard` logger; needs "
                               "t2t[tensorboard])")
    max_nonfinite: int = option(20, min=0, help="stop after this many updates skipped for a non-finite loss")
    dist_timeout: float = option(600.0, min=5.0, help="seconds a worker waits for the others before giving up")
    max_sentences_decode: int = option(128, min=1, help="sentences per batch when decoding for validation")

    def check(self) -> None:
        if self.schedule == "inverse_sqrt" and self.warmup == 0:
            raise OptionError("warmup", "inverse_sqrt needs warmup > 0; try 4000")
        if self.min_lr > self.lr:
            raise OptionError("min_lr", f"{self.min_lr} is above train.lr {self.lr}")
        if self.average_best and self.average_last:
            raise OptionError("average_last", "set average_best or average_last, not both")
        if not self.validation:
            for key in ("average_best", "patience", "valid_metric"):
                if getattr(self, key):
                    raise OptionError(key, "needs validation, which train.validation: false turns off"
                                      + ("; average_last averages without scores" if key == "average_best" else ""))
            if self.schedule == "plateau":
                raise OptionError("schedule", "plateau lowers the rate when validation stalls, which "
                                  "train.validation: false turns off")
            if self.valid_beam > 1:
                raise OptionError("valid_beam", "scores checkpoints in validation, which train.validation: "
                                  "false turns off")


MAX_OUTPUT_TOKENS = 4096        # no decoding setting asks for longer outputs than this
MAX_LEN_A = 100.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeOptions(Options):
    """Keys under `decode:` (and the flags of `t2t generate`)."""

    beam: int = option(1, min=1, help="beam size (1 = greedy)")
    nbest: int = option(1, min=1, help="hypotheses returned per input (at most beam)")
    length_penalty: float = option(1.0, min=-10.0, max=10.0, help="alpha: scores are divided by ((5+len)/6)**alpha "
                                   "(GNMT, rules t2t) or len**alpha (rules transformers)")
    rules: Literal["t2t", "transformers"] = option("t2t", help="beam search's rules. t2t: GNMT length penalty, every "
                                                  "ending among the 2K best extensions counts, </s> forced at the "
                                                  "limit with its own log-probability. transformers: as its generate "
                                                  "(len**alpha, endings among the K best, early_stopping, an output "
                                                  "also ends at the limit); a pretrained folder's default")
    early_stopping: Literal["heuristic", "k_finished", "never"] = option(
        "heuristic", help="rules transformers: when a sentence's beam search stops once beam hypotheses are "
        "finished: heuristic (its generate's early_stopping false), k_finished (true), never")
    max_len_a: float = option(1.2, min=0.0, max=MAX_LEN_A, help="max output length = a * source length + b")
    max_len_b: int = option(10, min=1, max=MAX_OUTPUT_TOKENS, help="max output length = a * source length + b")
    min_len: int = option(0, min=0, max=MAX_OUTPUT_TOKENS, help="no end-of-sentence before this many tokens "
                          "(never beyond an input's own maximum length, which wins)")
    no_repeat_ngram_size: int = option(0, min=0, max=64, help="forbid repeating n-grams of this size (0: off)")
    unk_penalty: float = option(0.0, min=-100.0, max=100.0, help="subtracted from the unknown token's log-probability")
    ctc_weight: float = option(0.0, min=0.0, max=1.0, help="joint CTC/attention decoding: weight of the CTC "
                               "prefix score (needs a model trained with model.ctc_weight > 0)")
    sampling: bool = option(False, help="sample instead of searching")
    temperature: float = option(1.0, min=1e-6, max=100.0, help="sampling temperature")
    top_k: int = option(0, min=0, help="sample from the k most likely tokens (0: all)")
    top_p: float = option(1.0, min=1e-6, max=1.0, help="nucleus sampling: smallest set with this probability mass")
    mbr: int = option(0, min=0, help="minimum Bayes risk decoding: draw this many candidates (the beam's n-best, "
                      "or samples with sampling: true) and output the one the others agree with most (0: off)")
    mbr_metric: str = option("", help="the agreement measure of mbr, a metric's name (default: the recipe's first metric)")
    max_sentences: int = option(64, min=1, help="sentences per decoding batch")
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = option(
        "auto", help="weights and activations when decoding (auto: bf16 on CUDA where supported, else fp32; "
        "int8: the linear layers dynamically quantized to int8 with torch's own quantization, on CPU)")
    source_lang: str = option("", help="models with language codes (M2M100, NLLB, mBART-50): the inputs' language "
                              "(default: the recipe's tokenizer.source_lang)")
    target_lang: str = option("", help="models with language codes: the language to write, its code forced first "
                              "(default: the recipe's tokenizer.target_lang; Whisper without one finds each "
                              "recording's)")

    def check(self) -> None:
        if self.nbest > self.beam and not self.sampling:
            raise OptionError("nbest", f"{self.nbest} is larger than decode.beam {self.beam}; raise beam or lower nbest")
        if self.sampling and self.beam > 1:
            raise OptionError("sampling", "sampling and beam > 1 exclude each other; set beam: 1")
        if self.mbr == 1:
            raise OptionError("mbr", "1 candidate leaves nothing to choose; use 0 (off) or at least 2")
        if self.mbr > self.beam and not self.sampling:
            raise OptionError("mbr", f"{self.mbr} candidates need decode.beam >= {self.mbr} (it is {self.beam}), "
                                     f"or sampling: true")
        if self.mbr and self.nbest > self.mbr:
            raise OptionError("nbest", f"{self.nbest} is larger than decode.mbr {self.mbr}, the candidates ranked")
