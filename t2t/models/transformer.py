"""Encoder-decoder Transformer (Vaswani et al. 2017) with pre-norm (default) or post-norm layers.

Decoding keeps, per decoder layer, a self-attention key/value cache (the hypothesis part of the
state) and the cross-attention keys/values of the memory, computed once (the static part).

Shapes: B batch, S source length, T target length, D model dim, H heads, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from t2t.models.attention import MultiHeadAttention
from t2t.models.base import ModelSpec, Seq2Seq, lengths_to_mask
from t2t.models.ctc import CTCHead, CTCOptions
from t2t.models.frontend import FeatureSourceOptions, source_embedder
from t2t.models.parts import ACTIVATIONS, NORMS, POSITIONS, FeedForward, Positions, RelativePositionBias, norm
from t2t.options import ModelOptions, OptionError, option


@dataclasses.dataclass(frozen=True)
class TransformerOptions(FeatureSourceOptions, CTCOptions, ModelOptions):
    arch: str = "transformer"
    dim: int = option(256, min=8, help="model dimension")
    layers: int = option(3, min=1, help="layers per side (unless encoder_layers/decoder_layers say otherwise)")
    encoder_layers: Optional[int] = option(None, min=1, help="encoder layers (default: layers)")
    decoder_layers: Optional[int] = option(None, min=1, help="decoder layers (default: layers)")
    heads: int = option(4, min=1, help="attention heads (must divide dim)")
    ff_dim: int = option(1024, min=1, help="feed-forward inner size")
    activation: ACTIVATIONS = option("relu", help="feed-forward activation (gelu: exact; gelu_tanh: the tanh "
                                     "approximation; silu: swish)")
    norm: Literal["pre", "post"] = option("pre", help="layer norm before (pre) or after (post) each block")
    positions: POSITIONS = option("sinusoidal", help="position encoding: sinusoidal (sine and cosine interleaved), "
                                  "sinusoidal_halves (sines then cosines, Marian's), sinusoidal_fairseq (fairseq's "
                                  "table, M2M100's), learned")
    position_offset: int = option(0, min=0, max=64, help="the first position's row of the position table (BART's "
                                  "learned table starts at 2, fairseq's sinusoid at padding id + 1)")
    embed_norm: bool = option(False, help="a layer norm over embeddings and positions, per side (BART's "
                              "layernorm_embedding)")
    max_positions: int = option(1024, min=8, help="longest sequence the position table covers")
    source_positions: Optional[int] = option(None, min=8, help="rows of the source side's position table "
                                             "(default: max_positions; Whisper's encoder has 1500)")
    relative_buckets: int = option(32, min=2, max=1024, help="positions relative: distance buckets (T5's)")
    relative_max_distance: int = option(128, min=2, help="positions relative: the distance the last bucket starts at")
    norm_type: NORMS = option("layer", help="layer: LayerNorm; rms: T5's RMS norm (no centring, no bias)")
    norm_eps: float = option(1e-5, min=1e-12, max=1e-2, help="the norms' epsilon")
    bias: bool = option(True, help="biases in the attention and feed-forward projections (T5 has none)")
    head_dim: Optional[int] = option(None, min=1, help="size of each attention head (default: dim / heads; "
                                     "T5's d_kv)")
    attention_scale: bool = option(True, help="scale attention scores by 1/sqrt(head size) (T5 does not)")
    ff_gated: bool = option(False, help="gated feed-forward: act(fc1(x)) * gate(x) (T5 v1.1, Flan-T5)")
    output_scale: bool = option(False, help="scale decoder outputs by dim ** -0.5 before the output layer (T5 with "
                                "tied embeddings)")
    embed_scale: bool = option(True, help="multiply token embeddings by sqrt(dim)")
    output_bias: bool = option(False, help="a fixed bias added to the output logits (a pretrained model's "
                               "final_logits_bias; not trained, as in its source)")
    pretrained: Optional[str] = option(None, help="a pretrained model's folder (config.json, weights, tokenizer "
                                       "files): the architecture, tokenizers, weights and decoding defaults come "
                                       "from it (see docs/pretrained.md)")
    attention_dropout: float = option(0.0, min=0.0, max=0.9, help="dropout on attention weights")
    activation_dropout: float = option(0.0, min=0.0, max=0.9, help="dropout inside the feed-forward block")
    tie_output: bool = option(True, help="tie the target embeddings and the output layer")
    share_embeddings: bool = option(False, help="one embedding table for source and target (shared vocabulary)")
    copy: bool = option(False, help="pointer-generator output: a learned gate mixes the vocabulary "
                        "distribution with attention over the source tokens (shared vocabulary)")
    conv_kernel: int = option(0, min=0, help="Conformer encoder (Gulati et al. 2020): width of the depthwise "
                              "convolution in each encoder layer, odd (e.g. 15 or 31); 0: plain Transformer layers")
    inter_ctc_weight: float = option(0.0, min=0.0, max=0.9, help="intermediate CTC (Lee and Watanabe 2021): this "
                                     "share of the CTC loss is taken at the middle encoder layer, through the "
                                     "same CTC head (needs model.ctc_weight > 0 and 2+ encoder layers)")

    def check(self) -> None:
        if self.inter_ctc_weight and (not self.ctc_weight or (self.encoder_layers or self.layers) < 2):
            raise OptionError("inter_ctc_weight", f"{self.inter_ctc_weight} needs a CTC loss to share "
                              f"(model.ctc_weight > 0, here {self.ctc_weight}) and at least 2 encoder layers "
                              f"(here {self.encoder_layers or self.layers})")
        if self.conv_kernel and (self.conv_kernel % 2 == 0 or self.norm != "pre"):
            raise OptionError("conv_kernel", f"{self.conv_kernel}: a Conformer layer needs an odd kernel and "
                              f"model.norm pre" + (f", not {self.norm}" if self.norm != "pre" else ""))
        if self.dim % self.heads and not self.head_dim:
            good = [h for h in (1, 2, 4, 8, 16) if self.dim % h == 0 and h != self.heads]
            raise OptionError("heads", f"{self.heads} does not divide model.dim {self.dim}; use "
                              f"{' or '.join(map(str, good[-2:]))}")


def attention(o: TransformerOptions, cross: bool = False) -> MultiHeadAttention:
    return MultiHeadAttention(o.dim, o.heads, o.attention_dropout, cross=cross, head_dim=o.head_dim, bias=o.bias,
                              scale=o.attention_scale)


def feed_forward(o: TransformerOptions) -> FeedForward:
    return FeedForward(o.dim, o.ff_dim, o.activation, o.activation_dropout, gated=o.ff_gated, bias=o.bias)


class EncoderLayer(nn.Module):
    def __init__(self, o: TransformerOptions):
        super().__init__()
        self.pre = o.norm == "pre"
        self.attn = attention(o)
        self.ff = feed_forward(o)
        self.norm1, self.norm2 = norm(o.norm_type, o.dim, o.norm_eps), norm(o.norm_type, o.dim, o.norm_eps)
        self.drop = nn.Dropout(o.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, S) True at real positions, bias (1, H, S, S) or None."""
        if self.pre:
            x = x + self.drop(self.attn(self.norm1(x), mask, bias=bias))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask, bias=bias)))
        return self.norm2(x + self.drop(self.ff(x)))


class ConvModule(nn.Module):
    """The Conformer convolution block: pointwise convolution to 2D channels and a GLU, a depthwise
    convolution over time, layer norm, Swish and a pointwise convolution back. Padded frames are
    zeroed before the depthwise convolution so that a sentence's result does not depend on its batch."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), real (B, S, 1) True at real frames -> (B, S, D)."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1).masked_fill(~real, 0.0)
        if y.is_cpu:          # CPU bf16 autocast makes the depthwise convolution slower, not faster
            with torch.autocast("cpu", enabled=False):
                y = self.depthwise(y.float().transpose(1, 2)).transpose(1, 2)
        else:
            y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(self.pointwise_out(F.silu(self.conv_norm(y))))


class ConformerLayer(nn.Module):
    """Macaron feed-forward (half step), self-attention, convolution, feed-forward (half step), layer
    norm: the Conformer encoder layer, with the model's absolute positions."""

    def __init__(self, o: TransformerOptions):
        super().__init__()
        self.ff1 = FeedForward(o.dim, o.ff_dim, "silu", o.activation_dropout)
        self.ff2 = FeedForward(o.dim, o.ff_dim, "silu", o.activation_dropout)
        self.attn = MultiHeadAttention(o.dim, o.heads, o.attention_dropout)
        self.conv = ConvModule(o.dim, o.conv_kernel, o.dropout)
        self.norm_ff1, self.norm_attn, self.norm_ff2, self.norm_out = (nn.LayerNorm(o.dim) for _ in range(4))
        self.drop = nn.Dropout(o.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, bias: None = None) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, S) True at real frames."""
        x = x + 0.5 * self.drop(self.ff1(self.norm_ff1(x)))
        x = x + self.drop(self.attn(self.norm_attn(x), mask))
        x = x + self.conv(x, mask.transpose(1, 2))
        x = x + 0.5 * self.drop(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x)


class DecoderLayer(nn.Module):
    def __init__(self, o: TransformerOptions):
        super().__init__()
        self.pre = o.norm == "pre"
        self.self_attn = attention(o)
        self.cross_attn = attention(o, cross=True)
        self.ff = feed_forward(o)
        self.norm1, self.norm2, self.norm3 = (norm(o.norm_type, o.dim, o.norm_eps) for _ in range(3))
        self.drop = nn.Dropout(o.dropout)

    def forward(self, x, kv, mem_mask, cache=None, need_weights=False, bias=None):
        """x (N, T, D) hypothesis rows; kv: memory keys/values and mem_mask (B, 1, S) of the B
        sentences (N = B * hypotheses per sentence); cache: this layer's k/v or None; bias: the
        self-attention's (1, H, T, t) relative position bias or None."""
        causal = cache is None or "k" not in cache      # a cached step (T = 1) sees every earlier position
        if self.pre:
            x = x + self.drop(self.self_attn(self.norm1(x), causal=causal, cache=cache, bias=bias))
            y, weights = self._cross(self.norm2(x), kv, mem_mask, need_weights)
            x = x + self.drop(y)
            return x + self.drop(self.ff(self.norm3(x))), weights
        x = self.norm1(x + self.drop(self.self_attn(x, causal=causal, cache=cache, bias=bias)))
        y, weights = self._cross(x, kv, mem_mask, need_weights)
        x = self.norm2(x + self.drop(y))
        return self.norm3(x + self.drop(self.ff(x))), weights

    def _cross(self, x, kv, mem_mask, need_weights):
        """Cross-attention with each sentence's hypotheses as one block of queries."""
        q = Seq2Seq.by_sentence(x, mem_mask.shape[0])                # (B, N/B*T, D)
        y = self.cross_attn(q, mem_mask, kv=kv, need_weights=need_weights)
        y, weights = y if need_weights else (y, None)
        if weights is not None:
            weights = weights.reshape(*x.shape[:2], weights.shape[-1])
        return y.reshape(x.shape), weights


class Transformer(Seq2Seq):
    """Encoder-decoder Transformer (pre- or post-norm) with a key/value cache for decoding."""

    name = "transformer"
    Options = TransformerOptions

    def __init__(self, options: TransformerOptions, spec: ModelSpec):
        super().__init__(options, spec)
        o = options
        if o.share_embeddings and not spec.shared_vocab:
            raise ValueError("model.share_embeddings needs a shared vocabulary (tokenizer.shared: true)")
        self.src_embed = source_embedder(spec, o.dim, 0.0, scale=o.embed_scale, channels=o.subsample_channels,
                                         stem=o.feature_stem,
                                         frames=2 * o.source_positions if o.source_positions else None)
        self.tgt_embed = nn.Embedding(spec.tgt_vocab, o.dim, padding_idx=spec.pad)
        if o.share_embeddings:
            self.tgt_embed.weight = self.src_embed.embed.weight
        self.src_pos = Positions(o.positions, o.source_positions or o.max_positions, o.dim, o.position_offset)
        self.tgt_pos = Positions(o.positions, o.max_positions, o.dim, o.position_offset)
        if o.positions == "relative":               # T5: a bias per head and distance, one table per side
            self.src_rel = RelativePositionBias(o.heads, o.relative_buckets, o.relative_max_distance, True)
            self.tgt_rel = RelativePositionBias(o.heads, o.relative_buckets, o.relative_max_distance, False)
        if o.embed_norm:                            # BART's layernorm_embedding, one per side
            self.src_embed_norm, self.tgt_embed_norm = nn.LayerNorm(o.dim), nn.LayerNorm(o.dim)
        self.drop = nn.Dropout(o.dropout)
        layer = ConformerLayer if o.conv_kernel else EncoderLayer
        self.encoder = nn.ModuleList(layer(o) for _ in range(o.encoder_layers or o.layers))
        self.decoder = nn.ModuleList(DecoderLayer(o) for _ in range(o.decoder_layers or o.layers))
        self.enc_norm = norm(o.norm_type, o.dim, o.norm_eps) if o.norm == "pre" else nn.Identity()
        self.dec_norm = norm(o.norm_type, o.dim, o.norm_eps) if o.norm == "pre" else nn.Identity()
        self.out = nn.Linear(o.dim, spec.tgt_vocab, bias=False)
        if o.output_bias:
            self.register_buffer("logit_bias", torch.zeros(spec.tgt_vocab))
        if o.copy:
            if not spec.shared_vocab or spec.feature_dim:
                raise ValueError("model.copy needs a text source and a shared vocabulary (tokenizer.shared: true)")
            self.copy_query = nn.Linear(o.dim, o.dim, bias=False)
            self.copy_gate = nn.Linear(2 * o.dim, 1)
        if o.ctc_weight:
            self.ctc = CTCHead(o.dim, spec.tgt_vocab, spec.pad, o.ctc_weight, o.inter_ctc_weight)
        self._init_weights()
        if o.tie_output:
            self.out.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1 and "table" not in name:
                nn.init.xavier_uniform_(p)
        for emb in (self.tgt_embed, getattr(self.src_embed, "embed", None)):
            if emb is not None:
                nn.init.normal_(emb.weight, 0.0, self.options.dim ** -0.5)
                with torch.no_grad():
                    emb.weight[self.spec.pad].zero_()

    def batch_lengths(self, lengths):
        """Whisper's stem fills every input up to its frames: each counts them all."""
        frames = getattr(self.src_embed, "frames", None)
        if not frames:
            return lengths
        out = np.array(lengths, copy=True)
        out[:, 0] = np.maximum(out[:, 0], frames)
        return out

    def length_limits(self) -> tuple[int | None, int | None]:
        o = self.options
        n, s = o.max_positions, o.source_positions or o.max_positions
        if self.spec.feature_dim:                                    # frames: subsampled 2x or 4x
            s = 2 * s if o.feature_stem == "conv1d" else 4 * s + 3
        return s, n

    # ------------------------------------------------------------------ encoder
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        x, lengths = self.src_embed(src, src_lengths)                # (B, S', D)
        x = self.src_pos(x)
        x = self.drop(self.src_embed_norm(x) if self.options.embed_norm else x)
        mask = lengths_to_mask(lengths, x.shape[1])                  # (B, S')
        attn_mask = mask[:, None, :]                                 # (B, 1, S')
        middle = len(self.encoder) // 2 if self.training and self.options.inter_ctc_weight else -1
        enc = {"mask": mask}
        bias = self.src_rel(x.shape[1], x.shape[1]) if self.options.positions == "relative" else None
        for i, layer in enumerate(self.encoder, 1):
            x = self.run_layer(layer, x, attn_mask, bias)
            if i == middle:                                          # the intermediate CTC's input
                enc["inter"] = self.enc_norm(x)
        enc["memory"] = self.enc_norm(x)
        if self.options.copy:
            enc["src"] = src                                         # the ids a copy puts out
        return enc

    def init_state(self, enc: dict, need_attn: bool = False) -> dict:
        kvs = [layer.cross_attn.memory_kv(enc["memory"]) for layer in self.decoder]
        static = {"kv": kvs, "mask": enc["mask"][:, None, :]}
        if self.options.copy:
            static.update(memory=enc["memory"], src=enc["src"])
        return {"static": static, "cache": [{} for _ in self.decoder], "pos": 0, "need_attn": need_attn}

    # ------------------------------------------------------------------ decoder
    def _decode(self, tgt: torch.Tensor, static: dict, caches, start: int, need_weights: bool):
        x = self.tgt_embed(tgt)
        if self.options.embed_scale:
            x = x * self.options.dim ** 0.5
        x = self.tgt_pos(x, start)
        x = self.drop(self.tgt_embed_norm(x) if self.options.embed_norm else x)
        weights = None
        last = len(self.decoder) - 1
        t = x.shape[1]
        bias = self.tgt_rel(t, start + t, start) if self.options.positions == "relative" else None
        for i, layer in enumerate(self.decoder):
            if caches is None:                                       # teacher forcing: training's path
                x, w = self.run_layer(layer, x, static["kv"][i], static["mask"], None,
                                      need_weights=need_weights and i == last, bias=bias)
            else:
                x, w = layer(x, static["kv"][i], static["mask"], caches[i], need_weights=need_weights and i == last,
                             bias=bias)
            weights = w if w is not None else weights
        x = self.dec_norm(x)
        return (x * self.options.dim ** -0.5 if self.options.output_scale else x), weights      # (B, T, D)

    def decode_step(self, prev: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        caches = [dict(c) for c in state["cache"]]                   # new dicts: old states stay valid
        h, weights = self._decode(prev[:, None], state["static"], caches, state["pos"], state["need_attn"])
        new = {"static": state["static"], "cache": caches, "pos": state["pos"] + 1,
               "need_attn": state["need_attn"]}
        if weights is not None:
            new["attn"] = weights[:, 0]
        if not self.options.copy:
            return self.project(h[:, 0]), new
        static = state["static"]
        q = self.by_sentence(h, static["mask"].shape[0])             # (B, N/B, D)
        attn, gate = self._copy_attention(q, static["memory"], static["mask"])
        per = h.shape[0] // q.shape[0]                               # hypotheses per sentence
        src = static["src"].repeat_interleave(per, dim=0)            # (N, S)
        return self._mix(self.project(h[:, 0]), attn.reshape(h.shape[0], -1), gate.reshape(-1, 1), src), new

    # ------------------------------------------------------------------ copying
    def _copy_attention(self, h: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """h (B, T, D) decoder outputs, memory (B, S, D), mask (B, 1, S) -> copy attention
        (B, T, S) over the source positions and the gate (B, T, 1): the weight of generating
        from the vocabulary rather than copying."""
        scores = torch.matmul(self.copy_query(h), memory.transpose(1, 2)) * self.options.dim ** -0.5
        attn = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)
        context = torch.matmul(attn.to(memory.dtype), memory)           # (B, T, D)
        gate = torch.sigmoid(self.copy_gate(torch.cat([h, context], dim=-1)).float())
        return attn, gate

    @staticmethod
    def _mix(logits: torch.Tensor, attn: torch.Tensor, gate: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """logits (N, V), copy attention (N, S), gate (N, 1), source ids (N, S) -> log-probabilities
        (N, V) of gate * softmax(logits) + (1 - gate) * the attention summed per source id."""
        p = gate * torch.softmax(logits.float(), dim=-1)
        p = p.scatter_add(1, src, (1.0 - gate) * attn)               # padding carries no attention
        return torch.log(p.clamp_min(1e-12))

    def output_rows(self, h: torch.Tensor, enc: dict, keep: torch.Tensor):
        if not self.options.copy:
            return super().output_rows(h, enc, keep)
        attn, gate = self._copy_attention(h, enc["memory"], enc["mask"][:, None, :])
        feats, attn, gate = h[keep], attn[keep], gate[keep]          # (N, D), (N, S), (N, 1)
        src = enc["src"][keep.nonzero()[:, 0]]                       # (N, S): each row's sentence
        return lambda i, j: self._mix(self.logits(feats[i:j]), attn[i:j], gate[i:j], src[i:j])

    def output_linear(self):
        """Models from a pretrained folder (large vocabularies, no earlier runs to stay equal to)
        train with the fused output loss."""
        if not self.options.pretrained or self.options.copy or not isinstance(self.out, nn.Linear):
            return None
        bias = getattr(self, "logit_bias", None)
        if self.out.bias is not None:
            bias = self.out.bias if bias is None else self.out.bias + bias
        return self.out.weight, bias

    def decode_features(self, enc: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        h, _ = self._decode(tgt_in, self.init_state(enc)["static"], None, 0, False)
        return h                                                     # (B, T, D)

    def cross_attention(self, src, src_lengths, tgt_in) -> torch.Tensor:
        static = self.init_state(self.encode(src, src_lengths))["static"]
        _, weights = self._decode(tgt_in, static, None, 0, True)
        return weights                                               # (B, T, S')
