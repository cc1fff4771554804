"""Each metric plugin equals its reference library on the same inputs."""

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from t2t.errors import T2TError
from t2t.scoring import paired_bootstrap, score_files

# sacreBLEU's README example: three sentences, two reference streams
REFS_STREAMS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
                ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [list(r) for r in zip(*REFS_STREAMS)]


def metric(registry, name, **options):
    cls = registry.get("metrics", name)
    return cls(cls.Options(name=name, **options))


def test_bleu_chrf_ter_equal_sacrebleu(registry):
    expected = {"bleu": sacrebleu.corpus_bleu(SYS, REFS_STREAMS).score,
                "chrf": sacrebleu.corpus_chrf(SYS, REFS_STREAMS).score,
                "chrf++": sacrebleu.corpus_chrf(SYS, REFS_STREAMS, word_order=2).score,
                "ter": sacrebleu.corpus_ter(SYS, REFS_STREAMS).score}
    for name, value in expected.items():
        s = metric(registry, name).compute(SYS, REFS)
        assert s.value == pytest.approx(value, abs=1e-9), name
        assert s.signature.startswith("nrefs:2")
    # the figures sacreBLEU's documentation prints for this example
    assert metric(registry, "bleu").compute(SYS, REFS).value == pytest.approx(48.53, abs=0.005)
    assert metric(registry, "chrf").compute(SYS, REFS).value == pytest.approx(59.73, abs=0.005)


def test_batches_add_up_to_the_corpus_score(registry):
    hyps = SYS * 7
    refs = REFS * 7
    for name in ("bleu", "chrf", "ter", "rouge", "wer", "exact_match"):
        m = metric(registry, name)
        whole = m.compute(hyps, refs).value
        m.reset()
        for i in range(0, len(hyps), 4):
            m.update(hyps[i: i + 4], refs[i: i + 4])
        assert m.result().value == pytest.approx(whole, abs=1e-9), name


def test_variable_reference_counts(registry):
    refs = [["The dog bit the man."], ["It was not unexpected.", "No one was surprised."], ["The man bit him first."]]
    streams = [[r[0] for r in refs], [None, refs[1][1], None]]
    assert metric(registry, "bleu").compute(SYS, refs).value == pytest.approx(
        sacrebleu.corpus_bleu(SYS, streams).score, abs=1e-9)


def test_bleu_options_reach_sacrebleu(registry):
    m = metric(registry, "bleu", tokenize="intl", lowercase=True)
    ref = sacrebleu.metrics.BLEU(tokenize="intl", lowercase=True)
    assert m.compute(SYS, REFS).value == pytest.approx(ref.corpus_score(SYS, REFS_STREAMS).score)
    assert "tok:intl" in m.signature() and "case:lc" in m.signature()


def test_rouge_equals_rouge_score(registry):
    target, prediction = "The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."
    s = metric(registry, "rouge").compute([prediction], [[target]])
    ref = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True).score(target, prediction)
    for t in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert s.details[t] == pytest.approx(100 * ref[t].fmeasure)
    # rouge-score's README: rouge1 F 0.70588, rougeL F 0.58824
    assert s.details["rouge1"] == pytest.approx(70.588, abs=1e-3)
    assert s.details["rougeL"] == pytest.approx(58.824, abs=1e-3)
    assert s.value == s.details["rouge1"]


def test_rouge_corpus_mean_multi_reference_and_ci(registry):
    hyps = ["the cat sat on the mat", "a dog ran in the park", "it is raining today"]
    refs = [["the cat was on the mat", "a cat sat on a mat"], ["dogs run in parks"], ["rain today", "it rains"]]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    s = metric(registry, "rouge").compute(hyps, refs)
    for t in ("rouge1", "rougeL"):
        best = [scorer.score_multi(r, h)[t].fmeasure for h, r in zip(hyps, refs)]
        assert s.details[t] == pytest.approx(100 * np.mean(best))
        low, high = s.details["ci95"][t]
        assert low <= s.details[t] <= high
    mean = metric(registry, "rouge", multi_ref="mean").compute(hyps, refs)
    avg = [np.mean([scorer.score(x, h)["rouge1"].fmeasure for x in r]) for h, r in zip(hyps, refs)]
    assert mean.details["rouge1"] == pytest.approx(100 * np.mean(avg))
    assert mean.details["rouge1"] < s.details["rouge1"]
    unstemmed = metric(registry, "rouge", use_stemmer=False).compute(["running dogs"], [["run dog"]])
    assert unstemmed.details["rouge1"] == 0.0
    second = metric(registry, "rouge", reference=1)         # one named reference: the protocol is in the signature
    got = second.compute(hyps[:1], refs[:1])
    assert got.details["rouge1"] == pytest.approx(100 * scorer.score(refs[0][1], hyps[0])["rouge1"].fmeasure)
    assert "multiref:ref1" in got.signature and "multiref:mean" in mean.signature and "multiref:max" in s.signature
    with pytest.raises(T2TError, match="reference 1 asked for, but an example has 1 reference"):
        second.compute(hyps[1:2], refs[1:2])


def test_sentence_values_equal_the_libraries_sentence_scores(registry):
    """A metric's per-sentence values (MBR's agreement measure) equal the reference libraries'."""
    for name, ref in (("bleu", sacrebleu.sentence_bleu), ("chrf", sacrebleu.sentence_chrf),
                      ("ter", sacrebleu.sentence_ter)):
        got = metric(registry, name).sentence_values(SYS, REFS)
        assert got == pytest.approx([ref(h, r).score for h, r in zip(SYS, REFS)], abs=1e-9), name
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = [100 * np.mean([s.fmeasure for s in scorer.score_multi(r, h).values()]) for h, r in zip(SYS, REFS)]
    m = metric(registry, "rouge")
    assert m.sentence_values(SYS, REFS) == pytest.approx(expected, abs=1e-9)
    m.update(SYS[:1], REFS[:1])
    m.sentence_values(SYS, REFS)                                  # leaves the corpus statistics alone
    assert m.result().value == metric(registry, "rouge").compute(SYS[:1], REFS[:1]).value
    assert metric(registry, "exact_match").sentence_values(["a b", "c"], [["a b"], ["d"]]).tolist() == [100.0, 0.0]


def test_mbr_order_puts_the_consensus_first_and_the_outlier_last(registry):
    from t2t.search import mbr_order
    texts = ["stock prices fell sharply", "the cat sat on a mat", "the cat sat on the mat", "a cat sat on the mat"]
    for name in ("rouge", "chrf", "ter"):                          # ter: lower is better, so negated
        order = mbr_order(texts, metric(registry, name))
        assert order[0] == 2 and order[-1] == 0, name
    assert mbr_order(["x"], metric(registry, "rouge")) == [0]
    assert mbr_order(["a", "b", "a"], metric(registry, "exact_match")) == [0, 2, 1]


def test_wer_cer_exact_match_distinct(registry):
    assert metric(registry, "wer").compute(["a b c d"], [["a x c"]]).value == pytest.approx(100 * 2 / 3)
    # kitten -> sitting: 3 character edits over 7 reference characters
    assert metric(registry, "cer").compute(["kitten"], [["sitting"]]).value == pytest.approx(100 * 3 / 7)
    assert metric(registry, "wer").compute(["one two", "three"], [["one two"], ["four"]]).value == pytest.approx(100 / 3)
    assert metric(registry, "exact_match").compute(["a b", "c", " d "], [["a b"], ["x", "c"], ["d"]]).value == 100.0
    assert metric(registry, "exact_match").compute(["A"], [["a"]]).value == 0.0
    assert metric(registry, "exact_match", lowercase=True).compute(["A"], [["a"]]).value == 100.0
    d = metric(registry, "distinct_n", n=1).compute(["a b a", "b c"], [[""], [""]])
    assert d.value == pytest.approx(100 * 3 / 5)


def test_mismatched_counts_are_an_error(registry, tmp_path):
    with pytest.raises(T2TError, match="3 hypotheses but 2 references"):
        metric(registry, "bleu").compute(SYS, REFS[:2])
    hyp = tmp_path / "hyp.txt"
    ref = tmp_path / "ref.txt"
    hyp.write_text("a\nb\nc\n")
    ref.write_text("a\nb\n")
    with pytest.raises(T2TError, match="ref.txt has 2 lines but .*hyp.txt has 3"):
        score_files(hyp, [ref], ["bleu"], registry=registry)


def test_paired_bootstrap_equals_sacrebleu(registry, monkeypatch):
    rng = np.random.default_rng(0)
    words = "the a dog cat sat ran on in mat park big small".split()
    refs = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    base = [" ".join(r.split()[:5] + ["x"]) for r in refs]
    system = [" ".join(r.split()[:7]) for r in refs]
    ours = paired_bootstrap(metric(registry, "bleu"), base, system, [[r] for r in refs], samples=200, seed=3)
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest
    monkeypatch.setenv("SACREBLEU_SEED", "3")
    test = PairedTest([("base", base), ("sys", system)], {"bleu": BLEU(references=[refs])}, references=None,
                      test_type="bs", n_samples=200)
    _, results = test()
    theirs = results["BLEU"][1]
    assert ours["p_value"] == pytest.approx(theirs.p_value)
    assert ours["system_mean"] == pytest.approx(theirs.mean)
    assert ours["p_value"] < 0.05


def test_score_files_cli(tmp_path, registry, capsys):
    from t2t.cli import main
    (tmp_path / "hyp").write_text("\n".join(SYS) + "\n")
    (tmp_path / "hyp2").write_text("\n".join(REFS_STREAMS[0]) + "\n")
    (tmp_path / "r1").write_text("\n".join(REFS_STREAMS[0]) + "\n")
    (tmp_path / "r2").write_text("\n".join(REFS_STREAMS[1]) + "\n")
    assert main(["score", "--metrics", "bleu,chrf", "--hyp", str(tmp_path / "hyp"), "--ref", str(tmp_path / "r1"),
                 "--ref", str(tmp_path / "r2"), "--hyp2", str(tmp_path / "hyp2"), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "bleu" in out and "48.53" in out and "p = " in out
