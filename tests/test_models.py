"""Model behaviour: learning, attention, masking, incremental decoding, save/load."""

import pytest
import torch

from t2t.models.attention import SourceAttention
from t2t.models.base import ModelSpec
from t2t.models.rnn import RNNOptions, RNNSeq2Seq
from t2t.models.transformer import Transformer, TransformerOptions
from t2t.loss import label_smoothed_loss

V = 13
SPEC = ModelSpec(src_vocab=V, tgt_vocab=V, pad=0, shared_vocab=True)

VARIANTS = {
    "lstm-general": lambda: RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=24, dropout=0.0), SPEC),
    "gru-dot-uni": lambda: RNNSeq2Seq(RNNOptions(cell="gru", embed_dim=16, hidden_dim=24, attention="dot",
                                                 bidirectional=False, dropout=0.0), SPEC),
    "lstm-additive-2layer": lambda: RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=24, attention="additive",
                                                          encoder_layers=2, decoder_layers=2, dropout=0.0), SPEC),
    "lstm-no-feed": lambda: RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=24, input_feeding=False, dropout=0.0), SPEC),
    "transformer-pre": lambda: Transformer(TransformerOptions(dim=32, heads=4, ff_dim=64, layers=2, dropout=0.0), SPEC),
    "transformer-post-learned": lambda: Transformer(TransformerOptions(dim=32, heads=4, ff_dim=64, layers=2, norm="post",
                                                                       positions="learned", dropout=0.0,
                                                                       share_embeddings=True), SPEC),
    "conformer": lambda: Transformer(TransformerOptions(dim=32, heads=4, ff_dim=64, layers=2, dropout=0.0,
                                                        conv_kernel=3), SPEC),
    "transformer-copy": lambda: Transformer(TransformerOptions(dim=32, heads=4, ff_dim=64, layers=2, dropout=0.0,
                                                               copy=True), SPEC),
}


def batch(seed=0, b=4, s=7, t=6):
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(2, s + 1, (b,), generator=g)
    src_len[0] = s
    src = torch.randint(4, V, (b, s), generator=g)
    src[torch.arange(s)[None] >= src_len[:, None]] = 0
    tgt = torch.randint(4, V, (b, t), generator=g)
    tgt[:, 0] = 2
    return src, src_len, tgt


@pytest.fixture(params=list(VARIANTS))
def model(request):
    torch.manual_seed(0)
    return VARIANTS[request.param]().eval()


def test_overfits_a_tiny_batch(model):
    src, src_len, tgt = batch()
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(200):
        loss, _ = label_smoothed_loss(model(src, src_len, tgt_in), tgt_out, 0.0, 0)
        loss = loss / tgt_out.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_decode_step_matches_teacher_forcing(model):
    """Cached incremental decoding gives the logits of a full forward pass (fp32, 1e-5)."""
    src, src_len, tgt = batch(1)
    full = model(src, src_len, tgt)                               # (B, T, V)
    state = model.init_state(model.encode(src, src_len))
    steps = []
    for t in range(tgt.shape[1]):
        logits, state = model.decode_step(tgt[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def decode_steps(model, src, src_len, tgt):
    state = model.init_state(model.encode(src, src_len))
    steps = []
    for t in range(tgt.shape[1]):
        logits, state = model.decode_step(tgt[:, t], state)
        steps.append(logits)
    return torch.stack(steps, 1)


def test_decoding_sees_the_weights_an_optimizer_step_changed(model):
    """Decoding without gradients (as in validation during training) keeps a transposed copy of the
    output weight; the fused AdamW step changes weights without bumping their version counter, and
    the next decoding must still use the new weights."""
    src, src_len, tgt = batch(2)
    with torch.no_grad():
        before = decode_steps(model, src, src_len, tgt)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    model.eval()
    with torch.no_grad():
        after, full = decode_steps(model, src, src_len, tgt), model(src, src_len, tgt)
    assert not torch.allclose(before, full, atol=1e-3)
    assert torch.allclose(after, full, atol=1e-5)


def test_padding_does_not_change_outputs(model):
    """A sentence alone and the same sentence inside a padded batch give the same logits."""
    src, src_len, tgt = batch(2)
    full = model(src, src_len, tgt)
    for i in range(src.shape[0]):
        n = int(src_len[i])
        alone = model(src[i: i + 1, :n], src_len[i: i + 1], tgt[i: i + 1])
        assert torch.allclose(alone, full[i: i + 1], atol=1e-5)


def test_attention_sums_to_one_and_ignores_padding(model):
    src, src_len, tgt = batch(3)
    attn = model.cross_attention(src, src_len, tgt)             # (B, T, S)
    assert attn.shape[:2] == tgt.shape
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)
    pad = torch.arange(attn.shape[-1])[None, :] >= src_len[:, None]
    assert attn.masked_select(pad[:, None, :].expand_as(attn)).abs().max() == 0


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_source_attention_scores(kind):
    torch.manual_seed(0)
    att = SourceAttention(kind, 8, 8)
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    q = torch.randn(2, 3, 8)
    ctx, w = att(q, att.keys(memory), memory, mask)
    assert ctx.shape == (2, 3, 8)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3))
    assert (w[0, :, 3:] == 0).all()
    if kind == "dot":                                            # Luong dot: softmax(q . m)
        ref = torch.softmax(q[1] @ memory[1].T, -1)
        assert torch.allclose(w[1], ref, atol=1e-6)


def test_reorder_state_picks_rows(model):
    """Hypotheses of one sentence share its static state: reordering them equals decoding the
    reordered prefixes from scratch."""
    src, src_len, tgt = batch(4)
    state = model.init_state(model.encode(src, src_len))
    three = torch.tensor([0, 0, 0, 1, 1, 1])                                   # 3 hypotheses per sentence
    wide = model.select_state(state, three, torch.tensor([0, 1]))
    prefixes = tgt[[0, 0, 0, 1, 1, 1], :2].clone()
    prefixes[1, 1], prefixes[4, 1] = 5, 6
    for t in range(2):
        _, wide = model.decode_step(prefixes[:, t], wide)
    index = torch.tensor([1, 1, 0, 5, 3, 3])
    a, _ = model.decode_step(prefixes[index, 1], model.reorder_state(wide, index))
    fresh = model.select_state(model.init_state(model.encode(src, src_len)), three, torch.tensor([0, 1]))
    for t in range(2):
        _, fresh = model.decode_step(prefixes[index, t], fresh)
    b, _ = model.decode_step(prefixes[index, 1], fresh)
    assert torch.allclose(a, b, atol=1e-5)
    full, _ = model.decode_step(prefixes[:, 1], wide)
    kept = model.select_state(wide, torch.tensor([3, 4, 5]), torch.tensor([1]))   # drop sentence 0
    c, _ = model.decode_step(prefixes[3:, 1], kept)
    assert torch.allclose(c, full[3:], atol=1e-5)


def test_state_dict_round_trip(model, tmp_path):
    src, src_len, tgt = batch(5)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    other = type(model)(model.options, model.spec).eval()
    other.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(model(src, src_len, tgt), other(src, src_len, tgt))


def test_feature_source_front_end():
    spec = ModelSpec(src_vocab=0, tgt_vocab=V, feature_dim=20)
    torch.manual_seed(0)
    for m in (RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=16, dropout=0.0), spec),
              Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0), spec),
              Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0, conv_kernel=5), spec)):
        m.eval()
        feats = torch.randn(2, 40, 20)
        lengths = torch.tensor([40, 23])
        enc = m.encode(feats, lengths)
        assert enc["memory"].shape[1] == 9                      # 40 frames -> 9 after two stride-2 convs
        assert enc["mask"].sum(1).tolist() == [9, 5]               # 23 -> 11 -> 5
        _, _, tgt = batch(6, b=2)
        assert m(feats, lengths, tgt).shape == (2, tgt.shape[1], V)


def test_copy_mixture_is_a_distribution_between_its_two_ends():
    """The pointer-generator's scores are log-probabilities: they sum to one, equal the vocabulary
    softmax with the gate open, and put all mass on the source's ids (in proportion to the copy
    attention) with it shut."""
    torch.manual_seed(0)
    model = VARIANTS["transformer-copy"]().eval()
    src, src_len, tgt = batch(6)
    with torch.no_grad():
        p = model(src, src_len, tgt).exp()                            # (B, T, V)
        assert torch.allclose(p.sum(-1), torch.ones(p.shape[:2]), atol=1e-5)
        model.copy_gate.weight.zero_()
        model.copy_gate.bias.fill_(40.0)                              # generate only
        vocab = torch.softmax(model.out(model(src, src_len, tgt, features_only=True)), -1)
        assert torch.allclose(model(src, src_len, tgt).exp(), vocab, atol=1e-6)
        model.copy_gate.bias.fill_(-40.0)                             # copy only
        p = model(src, src_len, tgt).exp()
    enc = model.encode(src, src_len)
    h = model.decode_features(enc, tgt)
    attn, _ = model._copy_attention(h, enc["memory"], enc["mask"][:, None, :])
    for b in range(src.shape[0]):
        n = int(src_len[b])
        expected = torch.zeros(tgt.shape[1], V).index_add_(1, src[b, :n], attn[b, :, :n].detach())
        assert torch.allclose(p[b], expected, atol=1e-6)
        absent = [v for v in range(V) if v not in src[b, :n].tolist()]
        assert p[b][:, absent].max() < 1e-9


def test_copy_needs_a_shared_text_vocabulary():
    with pytest.raises(ValueError, match="shared vocabulary"):
        Transformer(TransformerOptions(dim=32, heads=4, ff_dim=64, copy=True), ModelSpec(src_vocab=V, tgt_vocab=V))


def test_conformer_layers_and_their_options():
    """conv_kernel turns the encoder layers into Conformer layers (two half-step feed-forwards and a
    depthwise convolution of that width); an even width or post-norm is refused, naming the option."""
    from t2t.models.transformer import ConformerLayer
    from t2t.options import OptionError
    m = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=2, conv_kernel=7), SPEC)
    assert all(isinstance(layer, ConformerLayer) for layer in m.encoder)
    assert m.encoder[0].conv.depthwise.weight.shape == (16, 1, 7)
    for bad, said in ((dict(conv_kernel=4), "odd kernel"), (dict(conv_kernel=5, norm="post"), "not post")):
        with pytest.raises(OptionError, match=said) as e:
            TransformerOptions(dim=16, heads=2, **bad).check()
        assert e.value.key == "conv_kernel"
