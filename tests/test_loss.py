"""The training loss: label smoothing, sliced and fused output losses."""


import torch



def test_label_smoothing_matches_torch():
    from t2t.loss import label_smoothed_loss
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = 0
    loss, nll = label_smoothed_loss(logits, target, 0.1, 0)
    ref = torch.nn.functional.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0,
                                            label_smoothing=0.1, reduction="sum")
    assert torch.allclose(loss, ref, atol=1e-5)
    ref_nll = torch.nn.functional.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0, reduction="sum")
    assert torch.allclose(nll, ref_nll, atol=1e-5)


def test_sliced_loss_equals_full_loss():
    from t2t.dataset import from_encoded
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    from t2t.loss import label_smoothed_loss, sequence_loss
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0), ModelSpec(20, 20)).eval()
    batch = from_encoded([[5, 6, 7, 8], [5, 6]], [[9, 10, 11], [12]]).collate([0, 1], 0, 2, 3)
    full = label_smoothed_loss(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out, 0.1, 0)
    sliced = sequence_loss(model, model, batch, 0.1, 0, rows=2)
    assert torch.allclose(full[0], sliced[0]) and torch.allclose(full[1], sliced[1])


def test_the_fused_output_loss_equals_autograd(monkeypatch):
    """LinearCrossEntropy (no logits kept for backward) against plain autograd: same loss, nll and
    gradients, label smoothing and padding rows included, over several row slices."""
    import t2t.loss
    monkeypatch.setattr(t2t.loss, "SLICE_VALUES", 400)              # slices of 8 rows
    from t2t.loss import LinearCrossEntropy, label_smoothed_loss
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(50, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 50, (37,))
    target[[3, 10, 20]] = 0                                     # padding rows count for nothing
    for eps in (0.0, 0.1):
        loss, nll = LinearCrossEntropy.apply(h, w, b, target, eps, 0)
        ref_loss, ref_nll = label_smoothed_loss(torch.nn.functional.linear(h, w, b), target, eps, 0)
        assert torch.allclose(loss.double(), ref_loss.double()) and torch.allclose(nll.double(), ref_nll.double())
        grads = torch.autograd.grad(0.7 * loss, (h, w, b))
        ref = torch.autograd.grad(0.7 * ref_loss, (h, w, b))
        for g, r in zip(grads, ref):
            assert torch.allclose(g.double(), r.double(), atol=1e-6), (g - r).abs().max()
