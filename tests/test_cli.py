"""The `t2t` command end to end on a tiny run: run, evaluate, generate, plot, average."""

import io
import json
import sys

import pytest
import torch
import yaml

from t2t.cli import main
from t2t.registry import Registry
from t2t.testing import tiny_recipe, using_registry


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny trained run shared by the tests of this module (built-in plugins only)."""
    tmp = tmp_path_factory.mktemp("cli")
    with using_registry(Registry.from_plugins()):
        yield from _train(tmp)


def _train(tmp):
    recipe = tiny_recipe("reverse", output_dir=str(tmp / "run"), metrics=["exact_match", "chrf"],
                         train={"max_epochs": 3, "validate_every": 20})
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "run", str(path)]) == 0
    yield tmp, path


def test_run_writes_reports(run, capsys):
    tmp, _ = run
    report = json.loads((tmp / "run" / "eval" / "test.report.json").read_text())
    assert set(report["metrics"]) == {"exact_match", "chrf"}
    assert report["sentences"] == 40 and "nrefs:1" in report["metrics"]["chrf"]["signature"]
    md = (tmp / "run" / "eval" / "test.report.md").read_text()
    assert "| model | exact_match |" in md
    lines = (tmp / "run" / "eval" / "test.tsv").read_text().splitlines()
    assert lines[0] == "id\tsource\thypothesis\treferences" and len(lines) == 41


def test_evaluate_with_overrides(run, capsys):
    tmp, path = run
    assert main(["evaluate", str(path), "--checkpoint", str(tmp / "run"), "--split", "valid", "--beam", "3",
                 "--out", str(tmp / "ev")]) == 0
    out = capsys.readouterr().out
    assert "reverse valid: 40 sentences" in out and "exact_match" in out
    report = json.loads((tmp / "ev" / "valid.report.json").read_text())
    assert report["decode"]["beam"] == 3


def test_generate_file_stdin_jsonl_nbest(run, capsys, monkeypatch):
    tmp, _ = run
    (tmp / "in.txt").write_text("a b c\nd e\n")
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--input", str(tmp / "in.txt"),
                 "--output", str(tmp / "out.txt")]) == 0
    assert len((tmp / "out.txt").read_text().splitlines()) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("a b c\n"))
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--format", "jsonl", "--beam", "4", "--nbest", "3",
                 "--token-logprobs"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["source"] == "a b c" and len(rec["hypotheses"]) == 3
    scores = [h["score"] for h in rec["hypotheses"]]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(rec["hypotheses"][0]["token_logprobs"]) - rec["hypotheses"][0]["logprob"]) < 1e-3
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--nbest", "3"]) == 1
    assert "decode.nbest: 3 is larger than decode.beam 1" in capsys.readouterr().err


def test_generate_sampling_is_seeded(run, capsys, monkeypatch):
    tmp, _ = run
    outs = []
    for seed in (1, 1):
        monkeypatch.setattr(sys, "stdin", io.StringIO("a b c d e f\ng h i\n"))
        assert main(["generate", "--checkpoint", str(tmp / "run"), "--sampling", "--temperature", "2.0",
                     "--seed", str(seed)]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]


def test_plot_attention_and_curves(run, capsys, monkeypatch):
    tmp, _ = run
    monkeypatch.setattr(sys, "stdin", io.StringIO("a b c\n"))
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--plot-attention", str(tmp / "att.png")]) == 0
    assert (tmp / "att.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp / "run")]) == 0
    assert (tmp / "run" / "curves.png").stat().st_size > 1000


def test_average_checkpoints(run, capsys):
    tmp, _ = run
    ckdir = tmp / "run" / "checkpoints"
    files = sorted(ckdir.glob("step_*.pt"))
    assert main(["average", *map(str, files), "--output", str(tmp / "avg.pt")]) == 0
    import torch
    from t2t import checkpoint as ckpt
    avg = ckpt.load(tmp / "avg.pt")
    states = [ckpt.load(f)["model"] for f in files]
    for k, v in avg["model"].items():
        if v.is_floating_point():
            assert torch.allclose(v, sum(s[k] for s in states) / len(states), atol=1e-6)
    assert "train_state" not in avg
    assert main(["average", str(tmp / "run"), "--best", "1", "--output", str(tmp / "best.pt")]) == 0
    best = json.loads((ckdir / "index.json").read_text())["best"]
    assert torch.equal(ckpt.load(tmp / "best.pt")["model"]["out.weight"], ckpt.load(ckdir / best)["model"]["out.weight"])
    assert f"averaged 1 checkpoints ({best})" in capsys.readouterr().out
    assert main(["average", *map(str, files), "--best", "2", "--output", str(tmp / "x.pt")]) == 1
    assert "--best needs one run directory" in capsys.readouterr().err
    (tmp / "one.txt").write_text("a b\n")
    assert main(["generate", "--checkpoint", str(tmp / "avg.pt"), "--input", str(tmp / "one.txt")]) == 0


def test_bf16_decoding_agrees_with_fp32(run, monkeypatch):
    from t2t.pipeline import load
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: True)
    tmp, _ = run
    words = ["a b c", "d e f g", "h i j", "b a", "c c d e"]
    fp32 = load(tmp / "run", device="cpu").generate(words, precision="fp32")
    pipe = load(tmp / "run", device="cpu")
    bf16 = pipe.generate(words, precision="bf16")
    assert next(pipe.model.parameters()).dtype == torch.bfloat16
    assert sum(a == b for a, b in zip(fp32, bf16)) >= 4


def test_mbr_outputs_the_candidate_the_others_agree_with_most(run, capsys):
    """decode.mbr: of the beam's n-best, the output is the candidate with the highest summed chrF
    against the other candidates (computed here with sacrebleu directly)."""
    from sacrebleu.metrics import CHRF
    from t2t.pipeline import load
    tmp, path = run
    pipe = load(tmp / "run", device="cpu")
    words = ["a b c", "d e f g", "h i j", "b a", "c c d e", "j i h g f"]
    pools = pipe.generate(words, beam=5, nbest=5)
    chrf, expected = CHRF(), []
    for pool in pools:
        support = [sum(chrf.sentence_score(pool[i], [pool[j]]).score for j in range(5) if j != i) for i in range(5)]
        expected.append(pool[max(range(5), key=lambda i: (support[i], -i))])
    assert pipe.generate(words, mbr=5, mbr_metric="chrf") == expected
    ranked = pipe.generate(words, mbr=5, mbr_metric="chrf", nbest=5)
    assert [sorted(r) for r in ranked] == [sorted(p) for p in pools] and [r[0] for r in ranked] == expected
    sampled = pipe.generate(words, sampling=True, mbr=4, mbr_metric="chrf")
    drawn = pipe.generate(words, sampling=True, nbest=4, temperature=3.0)      # n-best of sampling: n samples
    assert all(len(d) == 4 for d in drawn) and len({t for d in drawn for t in d}) > len(words)
    assert len(sampled) == len(words) and sampled == pipe.generate(words, sampling=True, mbr=4, mbr_metric="chrf")
    assert main(["evaluate", str(path), "--checkpoint", str(tmp / "run"), "--mbr", "4", "--beam", "4",
                 "--out", str(tmp / "mbr")]) == 0                  # agreement: the recipe's first metric
    assert json.loads((tmp / "mbr" / "test.report.json").read_text())["decode"]["mbr"] == 4
    (tmp / "mbr.txt").write_text("a b\n")
    for flags, message in ((["--mbr", "6"], "decode.mbr: 6 candidates need decode.beam >= 6"),
                           (["--mbr", "1"], "decode.mbr: 1 candidate leaves nothing to choose"),
                           (["--mbr", "3", "--beam", "3", "--mbr-metric", "blue"], "unknown metric 'blue'")):
        assert main(["generate", "--checkpoint", str(tmp / "run"), "--input", str(tmp / "mbr.txt"), *flags]) != 0
        assert message in capsys.readouterr().err


def test_ensemble_of_runs_that_differ_in_train_seed(run, capsys):
    """train.seed changes the weights but not the split or vocabulary, so such runs decode together:
    `--checkpoint A B` evaluates and generates with their ensemble; other tokenizers are refused."""
    from t2t import checkpoint as ckpt
    from t2t.errors import T2TError
    from t2t.pipeline import load
    tmp, path = run
    assert main(["--quiet", "train", str(path), "train.seed=2", f"output_dir={tmp / 'seed2'}"]) == 0
    one, two = (ckpt.load(ckpt.resolve(tmp / r)) for r in ("run", "seed2"))
    assert one["tokenizers"] == two["tokenizers"] and one["task_state"] == two["task_state"]
    assert not torch.equal(one["model"]["out.weight"], two["model"]["out.weight"])
    assert main(["evaluate", str(path), "--checkpoint", str(tmp / "run"), str(tmp / "seed2"), "--out", str(tmp / "ens")]) == 0
    report = json.loads((tmp / "ens" / "test.report.json").read_text())
    assert len(report["ensemble"]) == 2 and report["sentences"] == 40 and report["reference_ppl"] > 1
    words = ["a b c", "d e f g"]
    ens = load([tmp / "run", tmp / "seed2"], device="cpu")
    assert type(ens.model).__name__ == "Ensemble" and len(ens.generate(words, beam=3)) == 2
    with pytest.raises(T2TError, match="takes one model, not an ensemble"):
        ens.generate(words, ctc_weight=0.3)
    (tmp / "ens.txt").write_text("a b c\n")
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--checkpoint", str(tmp / "seed2"),
                 "--input", str(tmp / "ens.txt")]) == 0
    assert capsys.readouterr().out == ens.generate(["a b c"])[0] + "\n"
    assert main(["--quiet", "train", str(path), "train.max_epochs=1", "tokenizer.lowercase=true",
                 f"output_dir={tmp / 'lower'}"]) == 0
    assert main(["generate", "--checkpoint", str(tmp / "run"), str(tmp / "lower"), "--input", str(tmp / "ens.txt")]) != 0
    assert "its tokenizers differ from those of" in capsys.readouterr().err


@pytest.mark.parametrize("make,message", [
    (lambda d: None, "no such file"),
    (lambda d: d.mkdir(), "is a folder"),
    (lambda d: d.write_bytes(b"a b\n\x89PNG\x00\xff\n"), ":2: not UTF-8 text"),
    (lambda d: d.write_bytes(b"a b\nc\x00d\n"), ":2: holds a NUL byte"),
])
def test_generate_input_errors_are_one_message(run, capsys, make, message):
    tmp, _ = run
    path = tmp / "bad-input"
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.unlink()
    make(path)
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert f" t2t: error: --input {path}" in err or f"{path}:2:" in err, err
    assert message in err and "Traceback" not in err


def test_decoding_flags_come_from_the_schema_and_keep_its_bounds(run, capsys):
    from t2t.cli import build_parser
    from t2t.options import DecodeOptions, field_infos
    tmp, _ = run
    sub = build_parser()._subparsers._group_actions[0].choices["generate"]
    flags = {a.dest for a in sub._actions}
    assert {f.name for f in field_infos(DecodeOptions)} <= flags
    assert main(["generate", "--checkpoint", str(tmp / "run"), "--length-penalty", "1e308"]) == 1
    assert "decode.length_penalty: 1e+308 is out of range; it must be between -10.0 and 10.0" in capsys.readouterr().err


def test_stderr_lines_carry_their_time_and_the_run_folder_keeps_them(tmp_path, capsys):
    import re
    import warnings

    from t2t import hookimpl

    class Warns:
        @hookimpl
        def t2t_run_start(self, run):
            warnings.warn("a plugin's warning", UserWarning, stacklevel=1)

    recipe = tiny_recipe("reverse", output_dir=str(tmp_path / "run"), data={"train_size": 100, "valid_size": 10,
                                                                             "test_size": 10},
                         train={"max_steps": 3, "validate_every": 3})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with using_registry(Registry.from_plugins([Warns()])):
        assert main(["train", str(path)]) == 0
        assert main(["train", str(path), "train.lr=-1"]) == 1
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d t2t: "
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("  ")]
    assert err and all(re.match(stamp, line) for line in err), err
    assert any("a plugin's warning" in line for line in err) and "t2t: error: " in err[-1]
    kept = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert any(re.match(stamp + "model ", line) for line in kept)
    assert any(re.match(stamp + r"warning: UserWarning: a plugin's warning", line) for line in kept)
    assert any(re.match(stamp + "step 3 validation", line) for line in kept), kept


def _actions(parser, name="t2t"):
    import argparse
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for n, sp in a.choices.items():
                yield from _actions(sp, n)
        elif not isinstance(a, argparse._HelpAction):
            yield name, a


def test_every_flag_of_every_command_has_help():
    from t2t.cli import build_parser
    missing = [(cmd, a.option_strings or a.dest) for cmd, a in _actions(build_parser()) if not (a.help or "").strip()]
    assert not missing, missing
    commands = {cmd for cmd, _ in _actions(build_parser())}
    assert {"train", "generate", "serve", "score", "run"} <= commands


def test_the_shell_completes_commands_and_flags(tmp_path):
    import os
    import subprocess
    pytest.importorskip("argcomplete", reason="argcomplete (t2t[completion]) is not installed")
    out = tmp_path / "completions"
    for line, expected in (("t2t gen", {"generate"}), ("t2t generate --bea", {"--beam"})):
        env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        subprocess.run([sys.executable, "-m", "t2t.cli"], env=env, timeout=60, check=True)
        got = set(out.read_text().replace("\x0b", "\n").split())
        assert expected <= got, got
