"""A recipe's working parts in one object: task, tokenizers, model. `t2t.load(path)` returns one.

    model = t2t.load("runs/quickstart")                # a run directory or a checkpoint file
    model.generate(["March 5, 2019"], beam=5)           # -> ["2019-03-05"]
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from t2t import checkpoint as ckpt
from t2t import dataset, lora, pretrained, search
from t2t.assembly import Assembly, build_model, encoder, read_checkpoint
from t2t.data import batch_indices
from t2t.device import decode_dtype, int8_copy, resolve_device
from t2t.errors import CheckpointError, DecodeOptionError, T2TError, did_you_mean
from t2t.loss import sequence_loss
from t2t.metric import Metric
from t2t.models.base import ModelSpec, Seq2Seq
from t2t.models.ctc import JointCTC
from t2t.models.ensemble import Ensemble
from t2t.options import DecodeOptions, OptionError
from t2t.recipe import Recipe, recipe_from_text
from t2t.registry import Registry, get_registry
from t2t.search import Hypothesis, Specials, generate
from t2t.task import Task
from t2t.tokenizer import Tokenizer
from t2t.version import __version__

log = logging.getLogger("t2t")


class Pipeline:
    """Task + tokenizers + model on a device: encode sources, decode, detokenize."""

    def __init__(self, recipe: Recipe, task: Task, src_tok: Tokenizer | None, tgt_tok: Tokenizer,
                 model: Seq2Seq, device: torch.device, registry=None):
        self.recipe, self.task, self.src_tok, self.tgt_tok = recipe, task, src_tok, tgt_tok
        self.model, self.device, self.registry = model, device, registry
        self.owns_model = False          # True when loaded for decoding: it may cast the weights
        self.checkpoint_paths: list[Path] = []     # where it was loaded from (an ensemble's members)
        self.truncated = 0               # sources cut to the model's maximum length so far
        self._int8: torch.nn.Module | None = None     # the int8 copy, made at the first int8 decoding

    @functools.cached_property
    def specials(self) -> Specials:
        """The ids search treats specially: the tokenizer's own rules (a pretrained folder's), else
        t2t's from the vocabulary. Made when first needed: a Whisper model needs its language."""
        v = self.tgt_tok.vocab
        return self.tgt_tok.specials() or Specials(bos=v.bos, eos=v.eos, pad=v.pad, unk=v.unk)

    @property
    def checkpoint_path(self) -> Path | None:
        """The checkpoint it was loaded from (an ensemble's first), None when built in memory."""
        return self.checkpoint_paths[0] if self.checkpoint_paths else None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_parts(cls, parts: Assembly, model: Seq2Seq, device: torch.device) -> "Pipeline":
        return cls(parts.recipe, parts.task, parts.src_tok, parts.tgt_tok, model, device, parts.registry)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | Sequence[str | os.PathLike], device: str = "auto",
                        registry=None, data_dir: str | os.PathLike | None = None) -> "Pipeline":
        """A pipeline from a run directory, checkpoint file or pretrained folder; from several, an
        ensemble of their models (`t2t.models.ensemble`), which must share the tokenizers; the
        first gives the recipe."""
        registry = get_registry(registry)
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            raise T2TError("no checkpoint given")
        files = [ckpt.resolve(Path(p)) for p in paths]
        loaded = [(f, d, recipe_from_text(d["recipe"], registry, where=f"{f} (recipe)"))
                  for f, d in ((f, read_checkpoint(f)) for f in files)]
        file, data, recipe = loaded[0]
        for f, d, r in loaded[1:]:
            if not ckpt.same_data(d["tokenizers"], data["tokenizers"]) or r.tokenizer != recipe.tokenizer:
                raise CheckpointError(f"{f}: its tokenizers differ from those of {file}; an ensemble's models "
                                      f"must share them (train them from one recipe, varying train.seed)")
        parts = Assembly(recipe, registry, data_dir, task_state=data.get("task_state", {}))
        parts.set_tokenizers(data["tokenizers"])
        models = [_load_model(r, registry, f, d) for f, d, r in loaded]
        if len(models) > 1:
            try:
                model = Ensemble(models)
            except ValueError as e:
                raise CheckpointError(f"{', '.join(map(str, files))}: {e}") from None
        else:
            model = models[0]
        dev = resolve_device(device)
        model.to(dev).eval()
        pipe = cls.from_parts(parts, model, dev)
        pipe.checkpoint_paths = files
        pipe.owns_model = True
        return pipe

    def payload(self) -> dict:
        """What a checkpoint needs to rebuild this pipeline (tensors and plain data only)."""
        toks = {"target": self.tgt_tok.state_dict()}
        if self.src_tok is not None:
            toks["source"] = self.src_tok.state_dict()
        model = self.model
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        base = {}
        folder = getattr(self.recipe.model, "pretrained", None)
        if folder and lora.has_adapters(model):      # adapters saved small: the folder holds the rest
            weights = {k: v for k, v in weights.items() if lora.is_adapter(k)}
            base = {"lora_base": {"pretrained": folder, "sha256": pretrained.weights_digest(folder)}}
        return {"t2t_version": __version__, "recipe": self.recipe.to_yaml(),
                "plugins": self.registry.versions() if self.registry else {},
                "spec": dataclasses.asdict(model.spec), "tokenizers": toks,
                "task_state": self.task.state_dict(), "model": weights, **base}

    # ------------------------------------------------------------------ encoding
    def encode_source(self, source: Any, cut: bool = True, tokenizer: Tokenizer | None = None):
        """An example's source -> ids (text) or a feature tensor (features), cut to what the model
        takes unless `cut` is False (training applies the recipe's overlong policy instead);
        `tokenizer` stands for the source tokenizer (another language's)."""
        tok = tokenizer or self.src_tok
        encoded = self.task.prepare_source(source) if tok is None else tok.encode(source)
        most = self.model.length_limits()[0]
        if cut and most is not None and len(encoded) > most:
            self.truncated += 1
            encoded = encoded[:most]
        return encoded

    def encoder(self, max_source_len: int | None = None, max_target_len: int | None = None,
                overlong: str = "filter") -> dataset.Encoder:
        """How examples become ids for training and scoring (`t2t.assembly.encoder`)."""
        return encoder(self.task, self.src_tok, self.tgt_tok, max_source_len, max_target_len, overlong)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tgt_tok.decode(ids)

    def hypothesis_json(self, hyp: Hypothesis, token_logprobs: bool = False) -> dict:
        """A hypothesis as `t2t generate --format jsonl` and the server give it: text, score
        (length-normalized as the search ranked it), log-probability, per-token ones if asked."""
        out = {"text": self.detokenize(hyp.tokens), "score": round(hyp.score, 5), "logprob": round(hyp.logprob, 5)}
        if token_logprobs:
            out["token_logprobs"] = [round(x, 4) for x in hyp.token_logprobs]
        return out

    # ------------------------------------------------------------------ decoding
    def decode_options(self, **overrides) -> DecodeOptions:
        """The recipe's decoding settings with `overrides` (None: keep the recipe's), checked by
        DecodeOptions' bounds and cross-field rules; an unknown or bad one raises DecodeOptionError."""
        given = {k: v for k, v in overrides.items() if v is not None}
        fields = DecodeOptions.__dataclass_fields__
        for key in given:
            if key not in fields:
                raise DecodeOptionError(key, f"unknown decoding setting{did_you_mean(key, list(fields))}; the "
                                        f"settings are: {', '.join(fields)}")
        try:
            opts = dataclasses.replace(self.recipe.decode, **given)
            opts.check()
        except OptionError as e:
            raise DecodeOptionError(e.key, e.message) from None
        for key, check in (("source_lang", lambda c: self.src_tok and self.src_tok.with_lang(c)),
                           ("target_lang", lambda c: self.tgt_tok.specials(c))):
            if getattr(opts, key):
                try:
                    check(getattr(opts, key))
                except T2TError as e:             # an unknown language, or a model without languages
                    raise DecodeOptionError(key, str(e).removeprefix(f"decode.{key}: ")) from None
        return opts

    def request_options(self, beam: int | None = None, nbest: int | None = None, **overrides) -> DecodeOptions:
        """`decode_options` for a caller that asks for n-best or MBR without a beam: the beam is
        widened to what they need (sampling excepted)."""
        if beam is None and not overrides.get("sampling"):
            wide = max(nbest or 0, overrides.get("mbr") or 0)
            beam = max(wide, self.recipe.decode.beam) if wide else None
        return self.decode_options(beam=beam, nbest=nbest, **overrides)

    def _set_precision(self, precision: str) -> None:
        """Cast the model's weights for decoding (a pipeline loaded for decoding owns its model)."""
        dtype = decode_dtype(precision, self.device)
        if next(self.model.parameters()).dtype != dtype:
            self.model.to(dtype)

    def decoding_model(self, precision: str) -> Seq2Seq:
        """The model that decodes at a `decode.precision`: the model itself, cast where the pipeline
        owns it, or (int8) its quantized copy, made once. A pipeline that does not own its model
        (validation during training) decodes with it as it is."""
        if not self.owns_model:
            return self.model
        if precision != "int8":
            self._set_precision(precision)
            return self.model
        if self.device.type != "cpu":
            raise T2TError("decode.precision int8: torch's int8 dynamic quantization runs on the CPU; "
                           "on a GPU use bf16 or fp16")
        if self._int8 is None:
            self._int8 = int8_copy(self.model)
        return self._int8

    @torch.no_grad()
    def search(self, sources: Sequence[Any], opts: DecodeOptions | None = None, seed: int | None = None,
               need_attention: bool = False, budget: search.Budget | None = None) -> list[list[Hypothesis]]:
        """Hypotheses for each source, in input order; batches are formed from length-sorted inputs.
        A `budget` bounds the whole call (it raises DecodeBudgetError where it runs out)."""
        opts = opts or self.recipe.decode
        def decode(inputs, o):
            return self.search(inputs, o, seed, need_attention, budget)
        if opts.mbr:
            return search.mbr(decode, sources, opts, self.detokenize, self.mbr_metric(opts.mbr_metric))
        if opts.sampling and opts.nbest > 1:
            return [sorted(pool, key=lambda h: -h.score) for pool in search.draw(decode, sources, opts, opts.nbest)]
        if self.tgt_tok.languages_to_detect(opts.target_lang):
            return self._by_language(sources, opts, seed, need_attention, budget)
        self.model.eval()
        model = self.decoding_model(opts.precision)
        before = self.truncated
        src_tok = self.src_tok.with_lang(opts.source_lang) if opts.source_lang else None
        specials = (self.tgt_tok.specials(opts.target_lang) or self.specials) if opts.target_lang else self.specials
        encoded = [self.encode_source(s, tokenizer=src_tok) for s in sources]
        if self.truncated > before:
            log.warning(f"{self.truncated - before} source(s) longer than the model takes "
                        f"({self.model.length_limits()[0]}) were cut")
        if self.src_tok is not None:
            encoded = [e if len(e) else [self.specials.unk] for e in encoded]
        inputs = dataset.from_encoded(encoded)
        order = np.argsort(inputs.lengths[:, 0], kind="stable")
        generator = None
        if opts.sampling:
            generator = torch.Generator(device=self.device).manual_seed(self.recipe.seed if seed is None else seed)
        if opts.ctc_weight:
            if isinstance(self.model, Ensemble):
                raise T2TError("decode.ctc_weight: joint CTC/attention decoding takes one model, not an ensemble")
            try:
                model = JointCTC(model, opts.ctc_weight, self.specials)
            except ValueError as e:
                raise T2TError(str(e)) from None
        out: list[list[Hypothesis] | None] = [None] * len(encoded)
        sp = specials
        for start in range(0, len(order), opts.max_sentences):
            idx = order[start: start + opts.max_sentences]
            batch = inputs.collate(idx, sp.pad, sp.bos, sp.eos, with_target=False).to(self.device)
            hyps = generate(model, batch.src, batch.src_lengths, opts, specials, generator, need_attention, budget)
            for i, h in zip(batch.index, hyps):
                out[i] = h
        return out

    def _by_language(self, sources: Sequence[Any], opts: DecodeOptions, seed, need_attention, budget):
        """Decoding where the target's language must be found (Whisper, none named): each input in
        the language `detect_languages` finds, inputs of one language together. Each input is read
        (its audio turned into features) once: both passes take the features."""
        sources = [self.encode_source(s) for s in sources]
        found = self.detect_languages(sources, opts)
        out: list[list[Hypothesis] | None] = [None] * len(sources)
        for code in dict.fromkeys(found):
            idx = [i for i, c in enumerate(found) if c == code]
            hyps = self.search([sources[i] for i in idx], dataclasses.replace(opts, target_lang=code), seed,
                               need_attention, budget)
            for i, h in zip(idx, hyps):
                out[i] = h
        return out

    @torch.no_grad()
    def detect_languages(self, sources: Sequence[Any], opts: DecodeOptions | None = None) -> list[str]:
        """The language of each source as transformers' Whisper `generate` finds it: the language
        token the model scores highest after <|startoftranscript|>."""
        opts = opts or self.recipe.decode
        languages = self.tgt_tok.languages_to_detect()
        if not languages:
            raise T2TError("this model has no languages to detect")
        codes = list(languages)
        ids = torch.tensor([languages[c] for c in codes], device=self.device)
        self.model.eval()
        model = self.decoding_model(opts.precision)
        inputs = dataset.from_encoded([self.encode_source(s) for s in sources])
        v = self.tgt_tok.vocab
        out: list[str] = [""] * len(sources)
        for start in range(0, len(sources), opts.max_sentences):
            idx = np.arange(start, min(len(sources), start + opts.max_sentences))
            batch = inputs.collate(idx, v.pad, v.bos, v.eos, with_target=False).to(self.device)
            state = model.init_state(model.encode(batch.src, batch.src_lengths))
            scores, _ = model.decode_step(torch.full((len(idx),), v.bos, dtype=torch.long, device=self.device), state)
            for i, best in zip(batch.index, scores[:, ids].argmax(-1).tolist()):
                out[i] = codes[best]
        return out

    def output_tokens(self, source_lengths: Sequence[int], opts: DecodeOptions) -> int:
        """The most output tokens decoding sources of these lengths may take: each one's maximum
        length times the hypotheses it keeps (the beam, or the samples drawn)."""
        limit = search.max_lengths(torch.tensor(list(source_lengths)), opts, self.model)
        return int(limit.sum()) * (max(opts.nbest, 1) if opts.sampling else opts.beam)

    def min_lengths(self, source_lengths: Sequence[int], opts: DecodeOptions) -> list[int]:
        """The `min_len` each source of these lengths gets: the asked one, or less where its
        maximum output length (`search.max_lengths`) is shorter."""
        limit = search.max_lengths(torch.tensor(list(source_lengths)), opts, self.model)
        return search.min_lengths(limit, opts).tolist()

    def mbr_metric(self, name: str = "") -> Metric:
        """The metric that measures agreement for decode.mbr: `name`, else the recipe's first
        metric, with the recipe's options for it where the recipe lists it."""
        specs = self.recipe.metrics
        name = name or (specs[0].name if specs else "")
        if not name:
            raise T2TError("decode.mbr needs a metric to measure agreement: set decode.mbr_metric "
                           "(e.g. chrf or rouge) or list metrics in the recipe")
        cls = get_registry(self.registry).get("metrics", name)
        options = next((m.options for m in specs if m.name == name), None)
        return cls(options)

    @torch.no_grad()
    def reference_loss(self, examples: Sequence, max_tokens: int = 4000) -> tuple[float, int]:
        """(summed negative log-likelihood, target tokens) of the examples' targets under teacher forcing."""
        self.model.eval()
        most = self.model.length_limits()
        data = dataset.encode_in_memory(examples, self.encoder(most[0], most[1] - 1 if most[1] else None, "truncate"))
        sp = self.specials
        nll, tokens = 0.0, 0
        for b in batch_indices(self.model.batch_lengths(data.lengths), max_tokens):
            batch = data.collate(b, sp.pad, sp.bos, sp.eos).to(self.device)
            _, n = sequence_loss(self.model, self.model, batch, 0.0, sp.pad)
            nll, tokens = nll + float(n), tokens + batch.target_tokens
        return nll, tokens

    def generate(self, sources: Sequence[Any], beam: int | None = None, nbest: int | None = None,
                 seed: int | None = None, **overrides) -> list:
        """Output text for each source (a list of nbest texts when nbest > 1). `overrides` are
        `decode:` keys (e.g. sampling=True, top_p=0.9); `seed` seeds sampling (default: the recipe's)."""
        opts = self.request_options(beam, nbest, **overrides)
        results = self.search(list(sources), opts, seed=seed)
        texts = [[self.detokenize(h.tokens) for h in hyps] for hyps in results]
        return [t[0] for t in texts] if opts.nbest == 1 else texts


def _load_model(recipe: Recipe, registry: Registry, file: Path, data: dict) -> Seq2Seq:
    """A checkpoint's model for decoding: built from its recipe and spec, its weights loaded, its
    LoRA adapters folded into the weights once."""
    model = build_model(recipe, registry, ModelSpec(**data["spec"]))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{file}: weights do not fit the model its recipe describes: "
                              f"{str(e).splitlines()[0]}") from None
    lora.merge(model)
    return model


def load(path: str | os.PathLike | Sequence[str | os.PathLike], device: str = "auto",
         data_dir: str | os.PathLike | None = None) -> Pipeline:
    """A trained model from a run directory (its best checkpoint) or a checkpoint file; given
    several, their ensemble."""
    return Pipeline.from_checkpoint(path, device=device, data_dir=data_dir)
