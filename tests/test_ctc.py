"""CTC: the auxiliary and intermediate training losses, and joint CTC/attention decoding (the CTC
prefix scores against a brute-force sum over every frame labelling, the search over the wrapped
model)."""

import itertools
import math

import pytest
import torch

from t2t.models.base import ModelSpec
from t2t.models.ctc import JointCTC
from t2t.models.rnn import RNNOptions, RNNSeq2Seq
from t2t.models.transformer import Transformer, TransformerOptions
from t2t.options import DecodeOptions
from t2t.search import Specials, generate

V, F = 7, 8                       # ids 0-3 are <pad>=blank, <unk>, <s>, </s>; 4-6 are tokens
SP = Specials()


def speech_model(seed=0, arch="transformer"):
    torch.manual_seed(seed)
    spec = ModelSpec(src_vocab=0, tgt_vocab=V, pad=0, feature_dim=F)
    if arch == "rnn":
        model = RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=16, dropout=0.0, ctc_weight=0.3), spec)
    else:
        model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0, ctc_weight=0.3), spec)
    with torch.no_grad():                         # a CTC head with opinions, so the scores differ a lot
        model.ctc.weight.mul_(8.0)
    return model.eval().requires_grad_(False)


def features(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(len(lengths), max(lengths), F, generator=g)
    for i, n in enumerate(lengths):
        src[i, n:] = 0.0
    return src, torch.tensor(lengths)


def collapse(path):
    out, prev = [], None
    for p in path:
        if p != prev and p != 0:
            out.append(p)
        prev = p
    return tuple(out)


def brute_force(lp):
    """lp (S', V) -> {labelling: P_ctc(labelling)} summed over every frame path."""
    probs = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        p = math.exp(sum(float(lp[t, k]) for t, k in enumerate(path)))
        key = collapse(path)
        probs[key] = probs.get(key, 0.0) + p
    return probs


def ctc_lp(model, src, lengths):
    """The CTC head's frame log-probabilities (S', B, V) with <s> and </s> ruled out as labels."""
    lp = model.ctc.log_probs(model.encode(src, lengths)["memory"]).detach()
    lp[..., [SP.bos, SP.eos]] = -math.inf
    return torch.log_softmax(lp, -1)


def prefix_prob(probs, g):
    return sum(p for y, p in probs.items() if y[: len(g)] == tuple(g))


@pytest.mark.parametrize("path", [[4, 5, 6], [4, 4, 5], [6, 6, 6]])
def test_prefix_scores_equal_the_sum_over_frame_labellings(path):
    model = speech_model()
    src, lengths = features([21, 13])                          # 4 and 2 encoder frames
    joint = JointCTC(model, 1.0, SP)
    enc = joint.encode(src, lengths)
    lp = ctc_lp(model, src, lengths)                           # (S', B, V)
    frames = enc["ctc_frames"].tolist()
    assert frames == [4, 2]
    truth = [brute_force(lp[: frames[b], b]) for b in range(2)]
    state = joint.init_state(enc)
    prev = torch.full((2,), SP.bos)
    for step in range(len(path) + 1):
        scores, state = joint.decode_step(prev, state)        # (2, V)
        for b in range(2):
            g = path[:step]
            below = prefix_prob(truth[b], g)
            if below == 0.0:                                    # the prefix cannot fit the frames
                continue
            for c in range(4, V):
                want = prefix_prob(truth[b], g + [c]) / below
                got = math.exp(float(scores[b, c]))
                assert got == pytest.approx(want, rel=1e-4, abs=1e-9), (b, g, c)
            want_end = truth[b].get(tuple(g), 0.0) / below
            assert math.exp(float(scores[b, SP.eos])) == pytest.approx(want_end, rel=1e-4, abs=1e-9)
            # with weight 1 the scores are a distribution over the next token (or the end)
            total = sum(math.exp(float(scores[b, c])) for c in range(1, V) if c != SP.bos)
            assert total == pytest.approx(1.0, rel=1e-4)
        if step < len(path):
            prev = torch.full((2,), path[step])


def test_joint_score_mixes_attention_and_ctc():
    model = speech_model()
    src, lengths = features([21, 17])
    w = 0.3
    mixed, pure = JointCTC(model, w, SP), JointCTC(model, 1.0, SP)
    state_j, state_c = mixed.init_state(mixed.encode(src, lengths)), pure.init_state(pure.encode(src, lengths))
    state_a = model.init_state(model.encode(src, lengths))
    prev = torch.full((2,), SP.bos)
    for tok in (5, 4):
        joint, state_j = mixed.decode_step(prev, state_j)
        ctc, state_c = pure.decode_step(prev, state_c)
        att, state_a = model.decode_step(prev, state_a)
        att = torch.log_softmax(att, -1)
        for c in range(1, V):
            torch.testing.assert_close(joint[:, c], (1 - w) * att[:, c] + w * ctc[:, c])
        prev = torch.full((2,), tok)


def test_a_large_vocabulary_scores_the_decoders_likeliest_tokens_alone():
    model = speech_model(4)
    src, lengths = features([25, 17])
    full, pruned = JointCTC(model, 0.5, SP), JointCTC(model, 0.5, SP, candidates=3)
    s_full, s_pruned = full.init_state(full.encode(src, lengths)), pruned.init_state(pruned.encode(src, lengths))
    state_a = model.init_state(model.encode(src, lengths))
    prev = torch.full((2,), SP.bos)
    for tok in (4, 6, 5):
        a, s_full = full.decode_step(prev, s_full)
        b, s_pruned = pruned.decode_step(prev, s_pruned)
        att, state_a = model.decode_step(prev, state_a)
        top = att.topk(3, dim=-1).indices
        for row in range(2):
            for c in range(1, V):
                if c in top[row].tolist() or c == SP.eos:      # scored alike; </s> always has its score
                    assert float(b[row, c]) == pytest.approx(float(a[row, c]), abs=1e-5)
                else:
                    assert float(b[row, c]) < -1e20             # ruled out
        prev = torch.full((2,), tok)


def test_needs_a_ctc_head():
    spec = ModelSpec(src_vocab=0, tgt_vocab=V, pad=0, feature_dim=F)
    plain = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1), spec)
    with pytest.raises(ValueError, match="model.ctc_weight"):
        JointCTC(plain, 0.3, SP)


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
@pytest.mark.parametrize("beam", [1, 3])
def test_joint_decoding_alone_equals_in_batch(beam, arch):
    model = speech_model(1, arch)
    src, lengths = features([29, 21, 13], seed=3)
    opts = DecodeOptions(beam=beam, nbest=beam, ctc_weight=0.5, max_len_a=0.0, max_len_b=6)
    joint = JointCTC(model, 0.5, SP)
    together = generate(joint, src, lengths, opts, SP)
    for i in range(3):
        n = int(lengths[i])
        alone = generate(joint, src[i: i + 1, :n], lengths[i: i + 1], opts, SP)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        for a, b in zip(alone, together[i]):
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_ctc_weight_one_never_ends_a_hypothesis_that_ctc_rules_out():
    """With weight 1 a finished hypothesis must have CTC probability above zero: fewer frames than
    its labelling needs (a repeat takes two frames plus a blank) make it impossible."""
    model = speech_model(2)
    src, lengths = features([13], seed=5)                          # 2 encoder frames
    opts = DecodeOptions(beam=4, nbest=4, ctc_weight=1.0, max_len_a=0.0, max_len_b=5)
    hyps = generate(JointCTC(model, 1.0, SP), src, lengths, opts, SP)[0]
    probs = brute_force(ctc_lp(model, src, lengths)[:2, 0])
    for h in hyps:
        assert probs.get(tuple(h.tokens), 0.0) > 0.0
        assert h.logprob == pytest.approx(math.log(probs[tuple(h.tokens)]), abs=1e-3)


def test_ctc_auxiliary_loss():
    from t2t.dataset import from_encoded
    from t2t.loss import label_smoothed_loss, sequence_loss
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0, ctc_weight=0.3),
                        ModelSpec(0, 12, feature_dim=20)).eval()
    batch = from_encoded([torch.randn(40, 20), torch.randn(25, 20)], [[5, 6, 7], [8, 9]]).collate([0, 1], 0, 2, 3)
    loss, nll = sequence_loss(model, model, batch, 0.1, 0, auxiliary=True)
    logits, enc = model(batch.src, batch.src_lengths, batch.tgt_in, with_encoding=True)
    ce, ref_nll = label_smoothed_loss(logits, batch.tgt_out, 0.1, 0)
    lp = torch.log_softmax(model.ctc(enc["memory"]), -1).transpose(0, 1)
    ctc = torch.nn.functional.ctc_loss(lp, torch.tensor([[5, 6, 7], [8, 9, 0]]), enc["mask"].sum(1),
                                       torch.tensor([3, 2]), blank=0, reduction="sum")
    assert torch.allclose(nll, ref_nll) and torch.allclose(loss, 0.7 * ce + 0.3 * ctc, atol=1e-4)
    plain, _ = sequence_loss(model, model, batch, 0.1, 0)              # validation: the attention loss alone
    assert torch.allclose(plain, ce, atol=1e-4)


def test_intermediate_ctc_loss():
    """model.inter_ctc_weight: in training, the CTC loss mixes the final encoder output's CTC with
    that of the middle layer's output (through the final layer norm and the same head); at
    evaluation the encoder returns no intermediate output."""
    from t2t.dataset import from_encoded
    from t2t.loss import label_smoothed_loss, sequence_loss
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    from t2t.options import OptionError
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, encoder_layers=4, decoder_layers=1,
                                           dropout=0.0, ctc_weight=0.4, inter_ctc_weight=0.25),
                        ModelSpec(0, 12, feature_dim=20))
    middle = {}
    model.encoder[1].register_forward_hook(lambda mod, args, out: middle.update(x=out))
    batch = from_encoded([torch.randn(40, 20), torch.randn(25, 20)], [[5, 6, 7], [8, 9]]).collate([0, 1], 0, 2, 3)
    loss, _ = sequence_loss(model, model, batch, 0.1, 0, auxiliary=True)
    logits, enc = model(batch.src, batch.src_lengths, batch.tgt_in, with_encoding=True)
    ce, _ = label_smoothed_loss(logits, batch.tgt_out, 0.1, 0)

    def ctc(h):
        lp = torch.log_softmax(model.ctc(h), -1).transpose(0, 1)
        return torch.nn.functional.ctc_loss(lp, torch.tensor([[5, 6, 7], [8, 9, 0]]), enc["mask"].sum(1),
                                            torch.tensor([3, 2]), blank=0, reduction="sum")
    final, inter = ctc(enc["memory"]), ctc(model.enc_norm(middle["x"]))
    assert not torch.allclose(final, inter, rtol=1e-2)
    assert torch.allclose(loss, 0.6 * ce + 0.4 * (0.75 * final + 0.25 * inter), atol=1e-4)
    assert "inter" not in model.eval().encode(batch.src, batch.src_lengths)
    with pytest.raises(OptionError, match="model.ctc_weight > 0"):
        TransformerOptions(inter_ctc_weight=0.3).check()
