"""Checkpoints: self-contained and safe to load, the best kept, averages of the best or last."""

import json
from pathlib import Path

import pytest
import torch

import t2t
from t2t.pipeline import load
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


def test_checkpoint_is_self_contained_and_safe(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_epochs": 1}))
    summary = train(r)
    path = tmp_path / "run" / "checkpoints" / summary["last_checkpoint"]
    data = torch.load(path, weights_only=True)          # tensors and plain types only
    assert data["format"] == "t2t-checkpoint" and "reverse" in data["recipe"]
    assert data["tokenizers"]["target"]["vocab"]["tokens"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert data["plugins"]["t2t"] == t2t.__version__
    # a pipeline rebuilt from the file alone gives identical logits
    pipe = load(path, device="cpu")
    src = torch.tensor([[5, 6, 7, 8]])
    tgt = torch.tensor([[2, 8, 7]])
    trained = type(pipe.model)(pipe.model.options, pipe.model.spec)
    trained.load_state_dict(data["model"])
    trained.eval()
    assert torch.equal(trained(src, torch.tensor([4]), tgt), pipe.model(src, torch.tensor([4]), tgt))
    # and decodes from the file alone as the run directory does
    words = ["a b c", "d e f g"]
    assert pipe.generate(words, beam=3) == load(tmp_path / "run", device="cpu").generate(words, beam=3)


def test_average_of_the_best_checkpoints(tmp_path, registry):
    """train.average_best: the N best checkpoints are kept (keep_best is 1) and averaged when training
    ends; the run directory then resolves to the average where it validates no worse than the best
    checkpoint, while resuming still takes the last."""
    import json
    from t2t import checkpoint as ckpt
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"),
                                train={"max_steps": 30, "max_epochs": 10, "validate_every": 5, "valid_max_sentences": 0,
                                       "valid_metric": "loss", "keep_best": 1, "average_best": 3}))
    summary = train(r)
    run = tmp_path / "run"
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    scores = {e["name"]: e["score"] for e in index["checkpoints"]}
    best3 = sorted(scores, key=scores.get)[:3]
    assert index["average"]["name"] == "average.pt" and index["average"]["from"] == best3
    assert index["average"]["from"][0] == index["best"]
    averaged = ckpt.load(run / "checkpoints" / "average.pt")["model"]
    states = [ckpt.load(run / "checkpoints" / n)["model"] for n in best3]
    for k, v in averaged.items():
        if v.is_floating_point():
            assert torch.allclose(v, sum(s[k] for s in states) / 3, atol=1e-6)
    assert not torch.equal(averaged["out.weight"], states[0]["out.weight"])
    assert ckpt.resolve(run, "last").name == "step_00000030.pt"
    avg = index["average"]                   # validated like the checkpoints; used where no worse
    assert avg["best"] == index["best"] and avg["best_score"] == scores[index["best"]]
    assert avg["used"] == (avg["score"] <= avg["best_score"])
    assert ckpt.resolve(run) == run / "checkpoints" / ("average.pt" if avg["used"] else index["best"])
    assert summary["average_checkpoint"] == ("average.pt" if avg["used"] else None)


def test_training_without_validation_averages_the_last_checkpoints(tmp_path, registry, monkeypatch):
    """train.validation false: no valid split is read, checkpoints carry no score, the last N are
    kept whatever keep_last says and averaged, and the run directory stands for that average."""
    from t2t import checkpoint as ckpt
    from t2t.task import Task
    read, stream = [], Task.stream
    monkeypatch.setattr(Task, "stream", lambda self, split: read.append(split) or stream(self, split))
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"),
                                train={"max_steps": 30, "max_epochs": 10, "validate_every": 5, "validation": False,
                                       "keep_last": 1, "average_last": 3}))
    summary = train(r)
    run = tmp_path / "run"
    assert set(read) <= {"train"}           # the train split streamed (or found prepared); no valid split read
    assert summary["status"] == "max_steps" and summary["best"] is None
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert [(e["name"], e["score"]) for e in index["checkpoints"]] == \
        [(f"step_{s:08d}.pt", None) for s in (20, 25, 30)]
    assert index["average"]["from"] == ["step_00000020.pt", "step_00000025.pt", "step_00000030.pt"]
    assert index["average"]["used"] and summary["average_checkpoint"] == "average.pt"
    assert ckpt.resolve(run) == run / "checkpoints" / "average.pt"
    averaged = ckpt.load(run / "checkpoints" / "average.pt")["model"]
    states = [ckpt.load(run / "checkpoints" / e["name"])["model"] for e in index["checkpoints"]]
    assert torch.allclose(averaged["out.weight"], sum(s["out.weight"] for s in states) / 3, atol=1e-6)
    events = [json.loads(line)["event"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert "valid" not in events and "step" in events
    assert t2t.evaluate(run, split="test")["metrics"]


def test_an_average_worse_than_the_best_checkpoint_is_not_used(tmp_path):
    """An average over checkpoints from early in a short run can score below the best of them:
    then the run directory resolves to the best checkpoint, and the average stays on disk."""
    from t2t import checkpoint as ckpt
    (tmp_path / "checkpoints").mkdir()
    entries = [{"name": f"step_{s:08d}.pt", "step": s, "metric": "bleu", "score": b}
               for s, b in ((250, 10.0), (500, 14.2), (750, 17.4))]
    for higher, best, avg_score, used in ((True, 750, 16.4, False), (True, 750, 17.4, True),
                                          (False, 250, 16.4, False), (False, 250, 9.0, True)):
        ckpt.write_index(tmp_path, {"checkpoints": entries, "best": f"step_{best:08d}.pt", "last": "step_00000750.pt",
                                    "metric": "bleu", "higher_is_better": higher,
                                    "average": {"name": "average.pt", "from": [e["name"] for e in entries]}})
        record = ckpt.score_average(tmp_path, avg_score)
        assert record["used"] is used and record["score"] == avg_score
        assert ckpt.resolve(tmp_path).name == ("average.pt" if used else f"step_{best:08d}.pt")


def test_a_checkpoint_saved_before_the_speech_parts_moved_decodes_as_it_did(tmp_path):
    """tests/fixtures/speech_ctc_run.pt: a tiny speech Transformer with a CTC head and its own
    front-end width (model.ctc_weight, model.subsample_channels, keys the base model options held
    then), trained 3 steps and saved by commit 3f7cfa2 (before checkpoints carried a checksum), with
    its beam outputs on a synthetic tone, joint CTC/attention and plain (speech_ctc_run.json)."""
    import wave

    import numpy as np

    from t2t.models.ctc import CTCHead
    fixtures = Path(__file__).parent / "fixtures"
    pipe = load(fixtures / "speech_ctc_run.pt", device="cpu")
    assert isinstance(pipe.model.ctc, CTCHead) and pipe.recipe.model.subsample_channels == 4
    rate = 8000
    t = np.arange(rate) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
    with wave.open(str(tmp_path / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    then = json.loads((fixtures / "speech_ctc_run.json").read_text())
    for name, ctc in (("joint", 0.4), ("plain", 0.0)):
        hyps = pipe.search([str(tmp_path / "tone.wav")], pipe.decode_options(ctc_weight=ctc, nbest=2))[0]
        assert [h.tokens for h in hyps] == [tokens for tokens, _ in then[name]], name
        assert [h.score for h in hyps] == pytest.approx([score for _, score in then[name]], abs=1e-4), name
