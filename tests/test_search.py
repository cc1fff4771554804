"""Search: greedy, beam and sampling against references and constructed models."""

import math

import pytest
import torch

from t2t.models.base import ModelSpec, Seq2Seq
from t2t.models.rnn import RNNOptions, RNNSeq2Seq
from t2t.models.transformer import Transformer, TransformerOptions
from t2t.options import DecodeOptions
from t2t.search import beam_search, filter_logits, generate, greedy, length_penalty, sample

V = 12
SPEC = ModelSpec(src_vocab=V, tgt_vocab=V)
EOS = 3


class Markov(Seq2Seq):
    """A 'model' whose next-token distribution depends only on the previous token."""

    name = "markov"

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 8):
        super().__init__(None, ModelSpec(src_vocab=vocab, tgt_vocab=vocab))
        logp = torch.full((vocab, vocab), -1e9)
        for prev, row in table.items():
            for tok, p in row.items():
                logp[prev, tok] = math.log(p)
        self.register_buffer("logp", logp)

    def encode(self, src, src_lengths):
        return {"memory": torch.zeros(src.shape[0], 1, 1), "mask": torch.ones(src.shape[0], 1, dtype=torch.bool)}

    def init_state(self, enc, need_attn=False):
        return {"static": {"memory": enc["memory"]}, "attn": torch.ones(enc["memory"].shape[0], 1)}

    def decode_step(self, prev, state):
        return self.logp[prev], dict(state)

    def forward(self, src, src_lengths, tgt_in):
        return self.logp[tgt_in]


def trap():
    # bos -> a (0.6) | b (0.4); a -> c (0.35) | eos (0.3) | d (0.35); c, d -> eos; b -> eos.
    # greedy: a then c or d, eos: p = 0.21. Best: b eos, p = 0.4.
    return Markov({2: {4: 0.6, 5: 0.4}, 4: {6: 0.35, 3: 0.3, 7: 0.35}, 6: {3: 1.0}, 7: {3: 1.0}, 5: {3: 1.0}})


SRC = torch.tensor([[4, 5]]), torch.tensor([2])


def opts(**kw):
    base = dict(max_len_a=0.0, max_len_b=6, length_penalty=0.0)
    base.update(kw)
    return DecodeOptions(**base)


def test_beam_finds_what_greedy_misses():
    model = trap()
    g = greedy(model, *SRC, opts())[0]
    assert g.tokens[0] == 4 and math.isclose(g.logprob, math.log(0.6 * 0.35), rel_tol=1e-5)
    best = beam_search(model, *SRC, opts(beam=2, nbest=2))[0]
    assert best[0].tokens == [5] and math.isclose(best[0].logprob, math.log(0.4), rel_tol=1e-5)
    assert best[1].tokens in ([4, 6], [4, 7]) or best[1].tokens == [4]
    assert best[0].score >= best[1].score


def test_beam_keeps_finished_until_no_open_beam_can_win():
    # bos -> x (0.5, then eos) | y (0.5, then z z z ... long but certain): with a length penalty the
    # long one wins although it finishes later; the search must not stop at the first finished one.
    model = Markov({2: {4: 0.5, 5: 0.5}, 4: {3: 1.0}, 5: {6: 1.0}, 6: {7: 1.0}, 7: {3: 1.0}})
    out = beam_search(model, *SRC, opts(beam=2, length_penalty=1.0, max_len_b=8))[0]
    assert out[0].tokens == [5, 6, 7]
    expected = math.log(0.5) / length_penalty(4, 1.0)
    assert math.isclose(out[0].score, expected, rel_tol=1e-5)


def random_models():
    torch.manual_seed(0)
    yield RNNSeq2Seq(RNNOptions(embed_dim=16, hidden_dim=16, dropout=0.0), SPEC).eval()
    torch.manual_seed(0)
    yield Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=2, dropout=0.0), SPEC).eval()


def sources(seed=0, b=5, s=6):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, s + 1, (b,), generator=g)
    src = torch.randint(4, V, (b, s), generator=g)
    src[torch.arange(s)[None] >= lengths[:, None]] = 0
    return src, lengths


def model_logprob(model, src, lengths, tokens):
    tgt = torch.tensor([[2] + tokens])
    with torch.no_grad():
        lp = torch.log_softmax(model(src, lengths, tgt).float(), -1)[0]
    return float(sum(lp[i, t] for i, t in enumerate(tokens + [EOS])))


@pytest.mark.parametrize("model", list(random_models()), ids=["rnn", "transformer"])
def test_scores_are_the_models_own(model):
    src, lengths = sources()
    for hyps in beam_search(model, src, lengths, opts(beam=4, nbest=3, length_penalty=1.0, max_len_b=5)):
        assert len(hyps) == 3 and hyps[0].score >= hyps[1].score >= hyps[2].score
    results = beam_search(model, src, lengths, opts(beam=4, nbest=3, length_penalty=1.0, max_len_b=5))
    for i, hyps in enumerate(results):
        n = int(lengths[i])
        for h in hyps:
            own = model_logprob(model, src[i: i + 1, :n], lengths[i: i + 1], h.tokens)
            assert math.isclose(h.logprob, own, abs_tol=1e-4)
            assert math.isclose(sum(h.token_logprobs), h.logprob, abs_tol=1e-4)
            assert math.isclose(h.score, h.logprob / length_penalty(len(h.tokens) + 1, 1.0), abs_tol=1e-4)


@pytest.mark.parametrize("model", list(random_models()), ids=["rnn", "transformer"])
def test_beam_one_equals_greedy(model):
    src, lengths = sources(1)
    o = opts(beam=1, max_len_b=8)
    g = greedy(model, src, lengths, o)
    b = beam_search(model, src, lengths, o)
    for gh, bh in zip(g, b):
        assert gh.tokens == bh[0].tokens
        assert math.isclose(gh.logprob, bh[0].logprob, abs_tol=1e-5)


@pytest.mark.parametrize("model", list(random_models()), ids=["rnn", "transformer"])
@pytest.mark.parametrize("beam", [1, 3])
def test_alone_equals_in_batch(model, beam):
    src, lengths = sources(2)
    o = opts(beam=beam, max_len_b=7)
    together = generate(model, src, lengths, o)
    for i in range(src.shape[0]):
        n = int(lengths[i])
        alone = generate(model, src[i: i + 1, :n], lengths[i: i + 1], o)[0]
        assert alone[0].tokens == together[i][0].tokens
        assert math.isclose(alone[0].score, together[i][0].score, abs_tol=1e-5)


def test_length_limits_and_no_repeat():
    model = list(random_models())[1]
    src, lengths = sources(3)
    for h, in generate(model, src, lengths, opts(beam=1, max_len_a=1.0, max_len_b=2)):
        assert len(h.tokens) + 1 <= max(lengths) + 2
    out = generate(model, src, lengths, opts(beam=3, min_len=5, max_len_b=9))
    assert all(len(h[0].tokens) >= 5 for h in out)
    out = generate(model, src, lengths, opts(beam=3, no_repeat_ngram_size=2, max_len_b=12))
    for h in out:
        grams = list(zip(h[0].tokens, h[0].tokens[1:]))
        assert len(grams) == len(set(grams))


def test_sampling_is_seeded_and_greedy_in_the_limit():
    model = list(random_models())[0]
    src, lengths = sources(4)
    o = opts(sampling=True, max_len_b=8)
    a = sample(model, src, lengths, o, generator=torch.Generator().manual_seed(1))
    b = sample(model, src, lengths, o, generator=torch.Generator().manual_seed(1))
    c = sample(model, src, lengths, o, generator=torch.Generator().manual_seed(2))
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.tokens for h in a] != [h.tokens for h in c]
    top1 = sample(model, src, lengths, opts(sampling=True, top_k=1, max_len_b=8), generator=torch.Generator())
    assert [h.tokens for h in top1] == [h.tokens for h in greedy(model, src, lengths, opts(max_len_b=8))]


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))      # 0.5 + 0.3 reaches 0.7
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.5))
    assert kept.tolist() == [[True, False, False, False]]


def test_attention_returned_with_hypotheses():
    model = list(random_models())[1]
    src, lengths = sources(5)
    for hyps in generate(model, src, lengths, opts(beam=2, max_len_b=4), need_attention=True):
        a = hyps[0].attention
        assert a.shape == (len(hyps[0].tokens) + 1, src.shape[1])
        assert torch.allclose(a.sum(-1), torch.ones(a.shape[0]), atol=1e-5)


def test_ensemble_scores_are_the_mean_of_the_members_probabilities():
    """Beam search over an RNN + Transformer + copy-Transformer ensemble: each hypothesis's log-probability is that of
    the mean of the members' teacher-forced distributions, token by token (which also checks that
    every member's state follows its beams through reordering and finished sentences)."""
    from t2t.models.ensemble import Ensemble
    rnn, tf = random_models()
    torch.manual_seed(1)      # a pointer-generator member: its scores are log-probabilities already
    copy = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0, copy=True),
                       ModelSpec(src_vocab=V, tgt_vocab=V, shared_vocab=True)).eval()
    members = (rnn, tf, copy)
    ens = Ensemble(members).eval()
    src, lengths = sources(3)
    results = generate(ens, src, lengths, opts(beam=3, nbest=3, length_penalty=1.0, max_len_b=6))
    for i, hyps in enumerate(results):
        n = int(lengths[i])
        for h in hyps:
            tgt = torch.tensor([[2] + h.tokens])
            with torch.no_grad():
                probs = [torch.softmax(m(src[i: i + 1, :n], lengths[i: i + 1], tgt).float(), -1)[0] for m in members]
                mixed = torch.log(sum(probs) / len(probs))
                forced = ens(src[i: i + 1, :n], lengths[i: i + 1], tgt)[0]
            want = float(sum(mixed[t, tok] for t, tok in enumerate(h.tokens + [EOS])))
            assert math.isclose(h.logprob, want, abs_tol=1e-4)
            assert torch.allclose(forced, mixed, atol=1e-5)
    alone = generate(rnn, src, lengths, opts(beam=3, max_len_b=6))
    assert [h[0].tokens for h in results] != [h[0].tokens for h in alone]      # the mixture is not one member


def test_ensemble_of_one_model_twice_decodes_as_the_model():
    from t2t.models.ensemble import Ensemble
    model = list(random_models())[1]
    src, lengths = sources(4)
    o = opts(beam=4, nbest=2, length_penalty=1.0, max_len_b=7)
    for mine, twice in zip(generate(model, src, lengths, o), generate(Ensemble([model, model]), src, lengths, o)):
        assert [h.tokens for h in mine] == [h.tokens for h in twice]
        assert all(math.isclose(a.score, b.score, abs_tol=1e-5) for a, b in zip(mine, twice))
    for mine, twice in zip(generate(model, src, lengths, o, need_attention=True),
                           generate(Ensemble([model, model]), src, lengths, o, need_attention=True)):
        assert torch.allclose(mine[0].attention, twice[0].attention, atol=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([model])
    with pytest.raises(ValueError, match="different target vocabularies"):
        Ensemble([model, trap()])


def test_min_len_yields_to_the_maximum_length():
    model = list(random_models())[1]
    src, lengths = sources(3)
    for beam in (1, 3):
        for hyps in generate(model, src, lengths, opts(beam=beam, min_len=50, max_len_b=5)):
            assert len(hyps[0].tokens) == 4 and math.isfinite(hyps[0].score)    # 5 with </s>: the limit wins


def test_the_python_api_checks_every_bound():
    from t2t.errors import DecodeOptionError
    import dataclasses
    base = DecodeOptions()
    for bad in ({"length_penalty": 1e308}, {"max_len_a": math.inf}, {"min_len": 10**6}, {"beam": 0},
                {"temperature": math.nan}, {"beam": "wide"}, {"sampling": 1}):
        with pytest.raises(ValueError) as e:
            dataclasses.replace(base, **bad)
        assert e.value.key == next(iter(bad))
    assert issubclass(DecodeOptionError, Exception)
