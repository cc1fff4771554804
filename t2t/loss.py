"""Training losses: label-smoothed cross-entropy over the non-padding target positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from t2t.data import Batch


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, eps: float, pad: int):
    """logits (..., V), target (...) -> (smoothed loss sum, nll sum) over non-pad positions.

    The smoothed loss is (1 - eps) * nll + eps * mean over the vocabulary of -log p, as in
    `F.cross_entropy(label_smoothing=eps)`."""
    lp = F.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    flat = target.reshape(-1)
    nll = F.nll_loss(lp, flat, ignore_index=pad, reduction="sum")
    if eps == 0:
        return nll, nll
    smooth = -(lp.sum(-1) * (flat != pad)).sum() / lp.shape[-1]
    return (1.0 - eps) * nll + eps * smooth, nll


def sequence_loss(model, net, batch: Batch, eps: float, pad: int, rows: int = 1024,
                  ctc_weight: float = 0.0):
    """Loss sums of a batch under teacher forcing: (training loss, attention nll).

    `model` runs the forward pass (the Seq2Seq itself, or its DDP or compiled wrapper); `net` is
    the Seq2Seq, whose `output_rows` scores the non-padding positions only, `rows` at a time: no
    scores are computed for padding, and no single (tokens, V) tensor is allocated for the whole
    batch (large allocations are fresh pages from the OS at every step, which cost as much as the
    arithmetic). With `ctc_weight` the training loss is (1 - w) * attention loss + w * CTC loss
    over the encoder output (`net.ctc_log_probs`), CTC summed over sentences like the token losses;
    where the encoder also returned a middle layer's output (`enc["inter"]`, intermediate CTC in
    training) the CTC loss is (1 - i) * final + i * intermediate, i = model.inter_ctc_weight."""
    h, enc = model(batch.src, batch.src_lengths, batch.tgt_in, features_only=True, with_encoding=True)
    keep = batch.tgt_out != pad
    target = batch.tgt_out[keep]                                                      # (N,)
    scores = net.output_rows(h, enc, keep)
    loss = nll = 0.0
    for i in range(0, target.shape[0], rows):
        l, n = label_smoothed_loss(scores(i, i + rows), target[i: i + rows], eps, pad)
        loss, nll = loss + l, nll + n
    if ctc_weight:
        def ctc_loss(key):                                           # </s> lies beyond each label length
            return F.ctc_loss(net.ctc_log_probs(enc, key), batch.tgt_out, enc["mask"].sum(1), keep.sum(1) - 1,
                              blank=pad, reduction="sum", zero_infinity=True)
        ctc = ctc_loss("memory")
        if "inter" in enc:
            inter = net.options.inter_ctc_weight
            ctc = (1.0 - inter) * ctc + inter * ctc_loss("inter")
        loss = (1.0 - ctc_weight) * loss + ctc_weight * ctc
    return loss, nll
