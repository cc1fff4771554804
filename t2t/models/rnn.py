"""LSTM/GRU encoder-decoder with attention (Luong et al. 2015; Bahdanau et al. 2015 scores).

Encoder: embeddings -> (bi)directional LSTM/GRU. Decoder step: [embedding; previous attentional
vector] (input feeding) -> LSTM/GRU -> attention over the memory -> tanh(W [context; h]) -> logits.

Shapes: B batch, S source length, T target length, E embedding, D hidden, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from t2t.models.attention import SourceAttention
from t2t.models.base import ModelSpec, Seq2Seq, lengths_to_mask
from t2t.models.ctc import CTCHead, CTCOptions
from t2t.models.frontend import FeatureSourceOptions, source_embedder
from t2t.options import ModelOptions, OptionError, option


@dataclasses.dataclass(frozen=True)
class RNNOptions(FeatureSourceOptions, CTCOptions, ModelOptions):
    arch: str = "rnn"
    cell: Literal["lstm", "gru"] = option("lstm", help="recurrent cell")
    embed_dim: int = option(256, min=1, help="embedding size")
    hidden_dim: int = option(512, min=2, help="decoder hidden size (= encoder output size)")
    encoder_layers: int = option(1, min=1, help="recurrent layers of the encoder")
    decoder_layers: int = option(1, min=1, help="recurrent layers of the decoder")
    bidirectional: bool = option(True, help="bidirectional encoder (each direction hidden_dim/2)")
    attention: Literal["dot", "general", "additive"] = option("general", help="attention score")
    input_feeding: bool = option(True, help="feed the previous attentional vector to the decoder")
    tie_embeddings: bool = option(False, help="share target embeddings with the output layer (embed_dim == hidden_dim)")

    def check(self) -> None:
        if self.bidirectional and self.hidden_dim % 2:
            raise OptionError("hidden_dim", f"{self.hidden_dim} must be even with a bidirectional encoder")
        if self.tie_embeddings and self.embed_dim != self.hidden_dim:
            raise OptionError("tie_embeddings", f"needs embed_dim == hidden_dim, got {self.embed_dim} and {self.hidden_dim}")


class RNNSeq2Seq(Seq2Seq):
    """LSTM/GRU encoder-decoder with dot, general or additive attention."""

    name = "rnn"
    Options = RNNOptions

    def __init__(self, options: RNNOptions, spec: ModelSpec):
        super().__init__(options, spec)
        o = options
        cell = nn.LSTM if o.cell == "lstm" else nn.GRU
        enc_hidden = o.hidden_dim // 2 if o.bidirectional else o.hidden_dim
        self.src_embed = source_embedder(spec, o.embed_dim, o.dropout, channels=o.subsample_channels,
                                         stem=o.feature_stem)
        self.encoder = cell(o.embed_dim, enc_hidden, num_layers=o.encoder_layers, batch_first=True,
                            bidirectional=o.bidirectional, dropout=o.dropout if o.encoder_layers > 1 else 0.0)
        self.bridge = nn.Linear(o.hidden_dim, o.hidden_dim)
        self.tgt_embed = nn.Embedding(spec.tgt_vocab, o.embed_dim, padding_idx=spec.pad)
        feed = o.hidden_dim if o.input_feeding else 0
        self.decoder = cell(o.embed_dim + feed, o.hidden_dim, num_layers=o.decoder_layers, batch_first=True,
                            dropout=o.dropout if o.decoder_layers > 1 else 0.0)
        self.attn = SourceAttention(o.attention, o.hidden_dim, o.hidden_dim)
        self.combine = nn.Linear(2 * o.hidden_dim, o.hidden_dim, bias=False)
        self.drop = nn.Dropout(o.dropout)
        self.out = nn.Linear(o.hidden_dim, spec.tgt_vocab)
        if o.tie_embeddings:
            self.out.weight = self.tgt_embed.weight
        if o.ctc_weight:
            self.ctc = CTCHead(o.hidden_dim, spec.tgt_vocab, spec.pad, o.ctc_weight)

    # ------------------------------------------------------------------ encoder
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        x, lengths = self.src_embed(src, src_lengths)            # (B, S', E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, S', D)
        return {"memory": memory, "mask": lengths_to_mask(lengths, x.shape[1]), "final": final}

    def _initial_hidden(self, final):
        """Encoder final states -> decoder initial states (layers, B, D) through a tanh bridge."""
        o = self.options

        def bridge(h):                                            # (layers*dirs, B, d) -> (layers_dec, B, D)
            if o.bidirectional:
                h = h.view(o.encoder_layers, 2, h.shape[1], h.shape[2])
                h = torch.cat([h[:, 0], h[:, 1]], dim=-1)
            h = torch.tanh(self.bridge(h[-1:]))                  # top encoder layer
            return h.expand(o.decoder_layers, -1, -1).contiguous()

        if o.cell == "lstm":
            return bridge(final[0]), bridge(final[1])
        return bridge(final)

    def init_state(self, enc: dict, need_attn: bool = False) -> dict:
        memory = enc["memory"]
        hidden = self._initial_hidden(enc["final"])
        b = memory.shape[0]
        state = {"static": {"memory": memory, "keys": self.attn.keys(memory), "mask": enc["mask"]},
                 "feed": memory.new_zeros(b, self.options.hidden_dim)}
        # recurrent state is stored batch-first so that reordering works on dim 0 like everything else
        if self.options.cell == "lstm":
            state["h"], state["c"] = hidden[0].transpose(0, 1), hidden[1].transpose(0, 1)
        else:
            state["h"] = hidden.transpose(0, 1)
        return state

    # ------------------------------------------------------------------ decoder
    def _run(self, emb: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """emb (B, T, E) -> attentional vectors (B, T, D), attention (B, T, S), new state.

        With input feeding the steps depend on each other and run one at a time; without it the
        recurrent layer runs over all T at once."""
        static = state["static"]
        lstm = self.options.cell == "lstm"
        hx = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous()) if lstm \
            else state["h"].transpose(0, 1).contiguous()
        if self.options.input_feeding:
            feed, outs, attns = state["feed"], [], []
            for t in range(emb.shape[1]):
                h, hx = self.decoder(torch.cat([emb[:, t: t + 1], feed[:, None]], dim=-1), hx)
                vec, attn = self._attend(h, static)
                feed = vec[:, 0]
                outs.append(vec)
                attns.append(attn)
            vecs, attn = torch.cat(outs, dim=1), torch.cat(attns, dim=1)
        else:
            h, hx = self.decoder(emb, hx)
            vecs, attn = self._attend(h, static)
            feed = vecs[:, -1]
        new = {"static": static, "feed": feed, "attn": attn[:, -1]}
        if lstm:
            new["h"], new["c"] = hx[0].transpose(0, 1), hx[1].transpose(0, 1)
        else:
            new["h"] = hx.transpose(0, 1)
        return vecs, attn, new

    def _attend(self, h: torch.Tensor, static: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """h (N, T, D) -> attentional vectors (N, T, D), attention (N, T, S); the hypotheses of a
        sentence query its memory together."""
        b = static["memory"].shape[0]
        context, attn = self.attn(self.by_sentence(h, b), static["keys"], static["memory"], static["mask"])
        context, attn = context.reshape(h.shape), attn.reshape(*h.shape[:2], attn.shape[-1])
        vec = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
        return self.drop(vec), attn

    def decode_step(self, prev: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        emb = self.drop(self.tgt_embed(prev[:, None]))              # (B, 1, E)
        vecs, _, state = self._run(emb, state)
        return self.project(vecs[:, 0]), state

    def decode_features(self, enc: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        vecs, _, _ = self._run(self.drop(self.tgt_embed(tgt_in)), self.init_state(enc))
        return vecs                                                 # (B, T, D)

    def cross_attention(self, src, src_lengths, tgt_in) -> torch.Tensor:
        state = self.init_state(self.encode(src, src_lengths))
        _, attn, _ = self._run(self.tgt_embed(tgt_in), state)
        return attn
