"""Training end to end: learning, checkpoints, exact resume after SIGKILL, DDP equivalence."""

import json
import os
import subprocess
import sys

import pytest
import torch

import t2t
from conftest import assert_same_final_parameters, final_parameters, two_worker_case
from t2t.errors import TrainingError
from t2t.pipeline import load
from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["rnn", "transformer", "transformer-copy"])
def test_model_learns_reverse(tmp_path, registry, arch):
    """Trains to >= 90% exact match; the copy variant decodes (beam search included) through
    its pointer-generator mixture."""
    extra = {"model": {"dim": 64, "ff_dim": 128, "heads": 4, "layers": 2, "dropout": 0.0}} if arch != "rnn" \
        else {"model": {"embed_dim": 32, "hidden_dim": 64, "dropout": 0.0}}
    if arch == "transformer-copy":
        arch, extra["model"]["copy"], extra["tokenizer"] = "transformer", True, {"name": "char", "shared": True}
    r = load_recipe(tiny_recipe("reverse", arch, output_dir=str(tmp_path / "run"),
                                data={"train_size": 3000, "max_length": 6},
                                train={"max_epochs": 12, "max_tokens": 800, "lr": 3e-3, "warmup": 50,
                                       "schedule": "inverse_sqrt" if arch == "transformer" else "constant"},
                                **extra))
    summary = train(r)
    assert summary["status"] == "finished"
    assert summary["best"] >= 90.0, summary          # exact match on validation words
    report = t2t.evaluate(tmp_path / "run", split="test")
    assert report["metrics"]["exact_match"]["value"] >= 90.0


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


def test_run_directory_is_never_clobbered(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 3}))
    train(r)
    with pytest.raises(TrainingError, match="already holds checkpoints; continue it with --resume"):
        train(r)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(r.replace(output_dir=str(tmp_path / "other")), resume=True)
    changed = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 6, "lr": 1e-2}))
    with pytest.raises(TrainingError, match="--reset scheduler"):
        train(changed, resume=True)
    assert train(changed, resume=True, reset=["scheduler"])["step"] == 6
    assert train(r, overwrite=True)["step"] == 3


@pytest.mark.slow
def test_ddp_two_workers_equal_one_process_with_the_same_batches(tmp_path, registry):
    path = two_worker_case(tmp_path, "ddp", 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "t2t.cli", "--quiet", "train", str(path), "--nproc", "2",
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_final_parameters(tmp_path / "single", tmp_path / "ddp", 8)


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


def test_best_k_checkpoints_and_early_stopping(tmp_path, registry):
    import json
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), metrics=["exact_match"],
                                train={"max_steps": 40, "max_epochs": 10, "validate_every": 5, "valid_max_sentences": 20,
                                       "valid_metric": "loss", "keep_best": 2, "keep_last": 1}))
    summary = train(r)
    index = json.loads((tmp_path / "run" / "checkpoints" / "index.json").read_text())
    on_disk = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert on_disk == sorted(e["name"] for e in index["checkpoints"]) and len(on_disk) <= 3
    scores = {e["name"]: e["score"] for e in index["checkpoints"]}
    assert index["last"] == "step_00000040.pt" and index["last"] in scores
    assert scores[index["best"]] == min(scores.values()) == summary["best"]      # loss: lower is better
    # no learning (lr 0): validation loss never improves, patience 2 stops after three validations
    frozen = load_recipe(tiny_recipe(output_dir=str(tmp_path / "frozen"),
                                     train={"max_steps": 100, "max_epochs": 20, "validate_every": 5,
                                            "valid_max_sentences": 0,
                                            "lr": 0.0, "patience": 2}))
    stopped = train(frozen)
    assert stopped["status"] == "early_stop" and stopped["step"] == 15


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


@pytest.mark.parametrize("key, value", [("patience", 3), ("average_best", 2), ("valid_metric", "loss"),
                                        ("schedule", "plateau"), ("valid_beam", 5)])
def test_settings_that_need_validation_are_refused_without_it(key, value):
    with pytest.raises(t2t.RecipeError, match=rf"train\.{key}.*validation: false"):
        load_recipe(tiny_recipe(train={"validation": False, key: value}))


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


def test_schedules():
    from t2t.options import TrainOptions
    from t2t.schedule import Schedule
    inv = Schedule(TrainOptions(schedule="inverse_sqrt", lr=1.0, warmup=100))
    assert inv.lr(50) == pytest.approx(0.5) and inv.lr(100) == pytest.approx(1.0) and inv.lr(400) == pytest.approx(0.5)
    cos = Schedule(TrainOptions(schedule="cosine", lr=1.0, warmup=10, min_lr=0.1), total_steps=110)
    assert cos.lr(5) == pytest.approx(0.5) and cos.lr(60) == pytest.approx(0.55) and cos.lr(110) == pytest.approx(0.1)
    lin = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=110)
    assert lin.lr(5) == pytest.approx(0.5) and lin.lr(35) == pytest.approx(0.75) and lin.lr(110) == pytest.approx(0.0)
    # a time budget that runs out before the steps do decays the rate by time spent
    assert lin.lr(35, spent=0.5) == pytest.approx(0.5) and lin.lr(35, spent=0.1) == pytest.approx(0.75)
    assert cos.lr(20, spent=0.5) == pytest.approx(0.55) and cos.lr(20, spent=1.0) == pytest.approx(0.1)
    late = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=10_000)
    assert late.lr(10, spent=0.2) == pytest.approx(1.0)       # warm-up took a fifth of the time
    assert late.lr(11, spent=0.2) == pytest.approx(1.0, abs=1e-3) and late.lr(12, spent=0.6) == pytest.approx(0.5)
    resumed = Schedule(TrainOptions(schedule="linear", lr=1.0, warmup=10), total_steps=10_000)
    resumed.load_state_dict(late.state_dict())
    assert resumed.lr(13, spent=0.9) == pytest.approx(0.125)
    plateau = Schedule(TrainOptions(schedule="plateau", lr=1.0, plateau_factor=0.5, plateau_patience=1))
    for value in (3.0, 2.0, 2.5, 2.6):                   # lower is better: two validations without improvement
        plateau.validated(value, higher_is_better=False)
    assert plateau.lr(1) == pytest.approx(0.5)
    again = Schedule(TrainOptions(schedule="plateau", lr=1.0))
    again.load_state_dict(plateau.state_dict())
    assert again.lr(1) == pytest.approx(0.5)
    assert Schedule(TrainOptions(schedule="constant", lr=2.0, warmup=4)).lr(1) == pytest.approx(0.5)


@pytest.mark.parametrize("valid_beam", [1, 3])
def test_validation_during_training_scores_what_the_checkpoint_scores(tmp_path, registry, monkeypatch, valid_beam):
    # every validation decodes with the weights of that moment and the beam train.valid_beam says: the
    # last one (after several of them) gives the score a fresh evaluation of its checkpoint gives
    from t2t.pipeline import Pipeline
    beams, search = [], Pipeline.search

    def spy(self, sources, opts=None, *a, **k):
        beams.append(opts.beam)
        return search(self, sources, opts, *a, **k)
    monkeypatch.setattr(Pipeline, "search", spy)
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), metrics=["chrf"], decode={"beam": 5},
                                train={"max_epochs": 4, "lr": 1e-2, "threads": 1, "valid_beam": valid_beam}))
    summary = train(r)
    assert set(beams) == {valid_beam}
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scores = [row["chrf"] for row in rows if row["event"] == "valid"]
    assert len(scores) == 4 and len(set(scores)) == 4
    report = t2t.evaluate(tmp_path / "run" / "checkpoints" / summary["last_checkpoint"], split="valid",
                          beam=valid_beam)
    assert report["metrics"]["chrf"]["value"] == pytest.approx(scores[-1], abs=1e-6)


def test_linear_schedule_decays_over_the_time_budget(tmp_path, registry, monkeypatch):
    # a clock that advances 6 s per update: max_time 1 minute ends the run after 10 updates, and the
    # rate of update k is lr * (1 - 6 (k - 1) / 60) (from k = 2 on; by steps alone, of which max_epochs
    # allows far more, it would be lr * (1 - k / total))
    from t2t.trainer import Trainer
    monkeypatch.setattr(Trainer, "_elapsed", lambda self: 6.0 * self.step)
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={
        "max_epochs": 50, "max_time": 1.0, "schedule": "linear", "lr": 1e-3, "log_every": 1}))
    summary = train(r)
    assert summary["status"] == "max_time" and summary["step"] == 10
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row["event"] == "step"]
    total = steps[0]["total_steps"]
    assert total > 100
    assert [row["lr"] for row in steps] == pytest.approx([1e-3 * (1 - max(k / total, 0.1 * (k - 1))) for k in range(1, 11)])


def test_bf16_autocast_training_on_cpu(tmp_path, registry, monkeypatch):
    # the bf16 path itself, whether or not this CPU runs bf16 natively (emulated is slow, not wrong)
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: True)
    r = load_recipe(tiny_recipe(arch="transformer", output_dir=str(tmp_path / "run"),
                                train={"max_steps": 6, "precision": "bf16"}))
    summary = train(r)
    assert summary["step"] == 6
    weights, _ = final_parameters(tmp_path / "run")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    fp32 = load_recipe(tiny_recipe(arch="transformer", output_dir=str(tmp_path / "fp32"),
                                   train={"max_steps": 6, "precision": "fp32"}))
    train(fp32)
    reference, _ = final_parameters(tmp_path / "fp32")
    assert any(not torch.equal(weights[k], reference[k]) for k in weights)      # bf16 really ran


def test_bf16_on_a_cpu_without_native_bf16_trains_in_fp32(tmp_path, registry, monkeypatch, caplog):
    from t2t.device import _warn_emulated_bf16
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: False)
    _warn_emulated_bf16.cache_clear()
    runs = {}
    for precision in ("bf16", "fp32"):
        r = load_recipe(tiny_recipe(output_dir=str(tmp_path / precision), train={"max_steps": 4, "precision": precision}))
        train(r)
        runs[precision], _ = final_parameters(tmp_path / precision)
    assert "train.precision bf16: this CPU has no native bf16" in caplog.text
    assert all(torch.equal(runs["bf16"][k], runs["fp32"][k]) for k in runs["fp32"])


def test_precision_resolution(monkeypatch):
    from t2t.device import decode_dtype, reduced_dtype
    cpu = torch.device("cpu")
    with pytest.raises(t2t.T2TError, match="decode.precision fp16 needs a CUDA GPU"):
        decode_dtype("fp16", cpu)
    assert reduced_dtype("auto", cpu, "train.precision") is None
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: True)
    assert reduced_dtype("auto", cpu, "train.precision") is None          # auto keeps a CPU in fp32
    assert decode_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr("t2t.device.fast_bf16", lambda device: False)
    assert decode_dtype("bf16", cpu) == torch.float32


def test_tensorboard_option(tmp_path, registry):
    r = load_recipe(tiny_recipe(output_dir=str(tmp_path / "run"), train={"max_steps": 4, "tensorboard": True,
                                                                          "log_every": 2}))
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(t2t.T2TError, match="pip install tensorboard"):
            train(r)
        return
    train(r)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_ctc_auxiliary_loss():
    from t2t.dataset import from_encoded
    from t2t.loss import label_smoothed_loss, sequence_loss
    from t2t.models.base import ModelSpec
    from t2t.models.transformer import Transformer, TransformerOptions
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=16, heads=2, ff_dim=32, layers=1, dropout=0.0, ctc_weight=0.3),
                        ModelSpec(0, 12, feature_dim=20)).eval()
    batch = from_encoded([torch.randn(40, 20), torch.randn(25, 20)], [[5, 6, 7], [8, 9]]).collate([0, 1], 0, 2, 3)
    loss, nll = sequence_loss(model, model, batch, 0.1, 0, ctc_weight=0.3)
    logits, enc = model(batch.src, batch.src_lengths, batch.tgt_in, with_encoding=True)
    ce, ref_nll = label_smoothed_loss(logits, batch.tgt_out, 0.1, 0)
    lp = torch.log_softmax(model.ctc(enc["memory"]), -1).transpose(0, 1)
    ctc = torch.nn.functional.ctc_loss(lp, torch.tensor([[5, 6, 7], [8, 9, 0]]), enc["mask"].sum(1),
                                       torch.tensor([3, 2]), blank=0, reduction="sum")
    assert torch.allclose(nll, ref_nll) and torch.allclose(loss, 0.7 * ce + 0.3 * ctc, atol=1e-4)


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
    loss, _ = sequence_loss(model, model, batch, 0.1, 0, ctc_weight=0.4)
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


@pytest.mark.slow
@pytest.mark.skipif(not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile (inductor) on CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path, registry):
    """train.compile: the torch.compile'd model trains to the same weights as eager mode, and the
    checkpoint holds the plain model's keys. (SGD: Adam would turn the rounding noise in the
    gradients of attention key biases, which are zero in exact arithmetic, into full-size steps.)"""
    weights = {}
    for compiled in (False, True):
        run = tmp_path / f"run{int(compiled)}"
        train(load_recipe(tiny_recipe(arch="transformer", output_dir=str(run), model={"dropout": 0.0},
                                      train={"max_steps": 4, "compile": compiled, "threads": 1,
                                             "optimizer": "sgd", "lr": 0.5})))
        weights[compiled], _ = final_parameters(run)
    assert weights[True].keys() == weights[False].keys()
    assert all(torch.allclose(weights[True][k], weights[False][k], atol=1e-5) for k in weights[False])


def test_init_from_takes_the_named_parts_and_refuses_what_does_not_fit(tmp_path, registry):
    """train.init_from copies another run's weights (all, or the parts init_only names); a part that
    names nothing, a shape that differs, or vocabulary rows across different vocabularies are
    refused with their names."""
    from t2t import checkpoint as ckpt
    from t2t.errors import CheckpointError
    base = tiny_recipe("reverse", "transformer", output_dir=str(tmp_path / "base"),
                       model={"dim": 32, "heads": 2, "ff_dim": 64, "layers": 1}, train={"max_steps": 4})
    train(load_recipe(base))
    source = ckpt.load(ckpt.resolve(tmp_path / "base"))["model"]

    def run(name, init_only=(), **sections):
        r = tiny_recipe("reverse", "transformer", output_dir=str(tmp_path / name),
                        model={"dim": 32, "heads": 2, "ff_dim": 64, "layers": 1, **sections.pop("model", {})},
                        train={"max_steps": 1, "lr": 1e-12, "init_from": str(tmp_path / "base"),
                               "init_only": list(init_only)}, **sections)
        train(load_recipe(r))
        return ckpt.load(ckpt.resolve(tmp_path / name, "last"))["model"]

    whole = run("whole")                                   # lr 1e-12: one update changes nothing visible
    assert all(torch.allclose(whole[k], source[k], atol=1e-6) for k in source)
    enc = run("encoder", init_only=["encoder", "enc_norm"])
    assert all(torch.allclose(enc[k], source[k], atol=1e-6) for k in source if k.startswith("encoder."))
    assert not torch.allclose(enc["out.weight"], source["out.weight"], atol=1e-6)      # not taken: its own init
    with pytest.raises(CheckpointError, match="train.init_only 'encodr' names no weights there; its parts: .*encoder"):
        run("typo", init_only=["encodr"])
    with pytest.raises(CheckpointError, match=r"do not fit this model: .*\(64, 32\) -> \(128, 32\)|do not fit this model"):
        run("wider", model={"ff_dim": 128})
    other_vocab = {"alphabet": "klmnopqrst"}               # another alphabet: another vocabulary of the same size
    with pytest.raises(CheckpointError, match="vocabulary differs .* vocabulary-indexed tensors .*init_only"):
        run("letters", data=other_vocab)
    kept = run("letters_encoder", init_only=["encoder"], data=other_vocab)
    assert all(torch.allclose(kept[k], source[k], atol=1e-6) for k in source if k.startswith("encoder."))


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
