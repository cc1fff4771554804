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


SLICE_VALUES = 2 ** 23


class LinearCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy of a linear output layer, computed a slice of rows at a time
    with its gradients in the same pass, so that no (rows, V) tensor outlives its slice: autograd
    would keep every slice's logits and log-probabilities for backward, most of a step's memory
    for a large vocabulary (58k for opus-mt, 256k for NLLB). Backward only scales the gradients
    (the loss is a sum); the nll is returned for logging, without a gradient.

    h (N, D), weight (V, D), bias (V,) or None, target (N,) -> (smoothed loss sum, nll sum) over
    the rows whose target is not `pad`. Slices hold at most 2**23 values (32 MB), small enough
    for the allocator to reuse instead of taking fresh pages from the OS each time."""

    @staticmethod
    def forward(ctx, h, weight, bias, target, eps: float, pad: int):
        vocab = weight.shape[0]
        rows = max(1, SLICE_VALUES // vocab)
        need_w, need_b = weight.requires_grad, bias is not None and bias.requires_grad
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        nll = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if need_w else None
        grad_b = torch.zeros(vocab, dtype=torch.float32, device=h.device) if need_b else None
        for i in range(0, h.shape[0], rows):
            x, t = h[i: i + rows], target[i: i + rows]
            lp = torch.log_softmax(F.linear(x, weight, bias).float(), dim=-1)        # (r, V)
            real = t != pad
            at = torch.arange(len(t), device=t.device)[real]
            n = -lp[at, t[real]].sum()
            loss = loss + ((1.0 - eps) * n - eps * (lp.sum(-1) * real).sum() / vocab if eps else n)
            nll = nll + n
            g = lp.exp_()                          # d loss / d logits = p - (1 - eps) onehot - eps / V
            g[at, t[real]] -= 1.0 - eps
            if eps:
                g -= eps / vocab
            g[~real] = 0.0
            grad_h[i: i + rows] = (g.to(weight.dtype) @ weight).to(h.dtype)
            if need_w:
                grad_w += g.t().to(x.dtype) @ x
            if need_b:
                grad_b += g.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss, grad_nll):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        return (grad_h * grad_loss.to(grad_h.dtype),
                (grad_w * grad_loss).to(w_dtype) if grad_w is not None else None,
                (grad_b * grad_loss).to(b_dtype) if grad_b is not None else None, None, None, None)


def sequence_loss(model, net, batch: Batch, eps: float, pad: int, rows: int = 1024, auxiliary: bool = False):
    """Loss sums of a batch under teacher forcing: (training loss, attention nll).

    `model` runs the forward pass (the Seq2Seq itself, or its DDP or compiled wrapper); `net` is
    the Seq2Seq, whose `output_rows` scores the non-padding positions only, `rows` at a time: no
    scores are computed for padding, and no single (tokens, V) tensor is allocated for the whole
    batch (large allocations are fresh pages from the OS at every step, which cost as much as the
    arithmetic). With `auxiliary` (training) the loss is the model's `training_loss`, which adds
    what its auxiliary heads (CTC) contribute."""
    h, enc = model(batch.src, batch.src_lengths, batch.tgt_in, features_only=True, with_encoding=True)
    keep = batch.tgt_out != pad
    target = batch.tgt_out[keep]                                                      # (N,)
    linear = net.output_linear() if torch.is_grad_enabled() else None
    if linear is not None:
        loss, nll = LinearCrossEntropy.apply(h[keep], *linear, target, eps, pad)
    else:
        scores = net.output_rows(h, enc, keep)
        loss = nll = 0.0
        for i in range(0, target.shape[0], rows):
            part, n = label_smoothed_loss(scores(i, i + rows), target[i: i + rows], eps, pad)
            loss, nll = loss + part, nll + n
    if auxiliary:
        loss = net.training_loss(loss, enc, batch.tgt_out, keep)
    return loss, nll
