"""Speech front-end: filterbanks against a reference written from the formula, resampling,
SpecAugment, CMVN, the feature cache, and a tiny speech model end to end."""

import math
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import recipe_file
from t2t.errors import DataError, T2TError
from t2t.recipe import load_recipe
from t2t.testing import tiny_run
from t2t_plugins.speech.features import fbank, mel_centers, mfcc, read_wav, resample, spec_augment, vtlp

EPS = float(np.finfo(np.float32).eps)


def reference_fbank(x: np.ndarray, rate: int, n_mels: int = 80, frame_ms: float = 25, hop_ms: float = 10):
    """Kaldi's log-mel filterbank computed frame by frame in numpy, straight from its definition."""
    length, hop = int(rate * frame_ms / 1000), int(rate * hop_ms / 1000)
    n_fft = 2 ** math.ceil(math.log2(length))
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)                                   # noqa: E731
    lo, hi = mel(20.0), mel(rate / 2)
    edges = lo + (hi - lo) * np.arange(n_mels + 2) / (n_mels + 1)
    bin_mel = mel(np.arange(n_fft // 2) * rate / n_fft)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))) ** 0.85
    out = []
    for start in range(0, len(x) - length + 1, hop):
        frame = x[start: start + length].astype(np.float64)
        frame = frame - frame.mean()
        emphasised = np.empty_like(frame)
        emphasised[0] = frame[0] - 0.97 * frame[0]
        emphasised[1:] = frame[1:] - 0.97 * frame[:-1]
        power = np.abs(np.fft.rfft(emphasised * window, n_fft)) ** 2
        row = []
        for m in range(n_mels):
            left, center, right = edges[m], edges[m + 1], edges[m + 2]
            weights = np.where(bin_mel <= center, (bin_mel - left) / (center - left), (right - bin_mel) / (right - center))
            weights = np.where((bin_mel > left) & (bin_mel < right), weights, 0.0)
            row.append(np.log(max(float(weights @ power[: n_fft // 2]), EPS)))
        out.append(row)
    return np.array(out)


def write_wav(path, samples: np.ndarray, rate: int):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_fbank_matches_the_reference_on_synthetic_audio():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000) + 0.05 * rng.standard_normal(8000)).astype(np.float32)
    ours = fbank(torch.from_numpy(x), 16000).numpy()
    ref = reference_fbank(x, 16000)
    assert ours.shape == ref.shape == (48, 80)
    assert np.abs(ours - ref).max() < 1e-3                     # float32 output of a float64 computation


def test_fbank_matches_the_reference_on_real_recordings(shared_data):
    for rel, rate in (("an4/wav/an251-fash-b.wav", 16000), ("fsdd/wav/7_jackson_32.wav", 8000)):
        x, file_rate = read_wav(shared_data / rel)
        assert file_rate == rate
        ours = fbank(x, rate, n_mels=40 if rate == 8000 else 80).numpy()
        ref = reference_fbank(x.numpy(), rate, n_mels=40 if rate == 8000 else 80)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-3, rel


def test_a_pure_tone_lights_its_own_mel_band():
    x = torch.sin(2 * math.pi * 1000 * torch.arange(16000) / 16000)
    feats = fbank(x, 16000, n_mels=40)
    lo, hi = 1127 * math.log1p(20 / 700), 1127 * math.log1p(8000 / 700)
    centers = [lo + (hi - lo) * (m + 1) / 41 for m in range(40)]
    expected = min(range(40), key=lambda m: abs(centers[m] - 1127 * math.log1p(1000 / 700)))
    assert int(feats.mean(0).argmax()) == expected


def test_mfcc_is_an_orthonormal_dct_of_the_log_mels():
    log_mel = torch.randn(7, 40)
    full = mfcc(log_mel, 40)
    assert torch.allclose((full ** 2).sum(1), (log_mel ** 2).sum(1), rtol=1e-4)   # energy kept
    assert torch.allclose(mfcc(log_mel, 13), full[:, :13])


@pytest.mark.parametrize("orig,new", [(8000, 16000), (16000, 8000), (22050, 16000)])
def test_resampling_keeps_a_band_limited_tone(orig, new):
    freq = 440.0
    x = torch.sin(2 * math.pi * freq * torch.arange(orig, dtype=torch.float64) / orig)
    y = resample(x, orig, new)
    assert y.shape[0] == new
    expected = torch.sin(2 * math.pi * freq * torch.arange(new, dtype=torch.float64) / new)
    middle = slice(new // 10, -new // 10)                        # edges see the zero padding
    assert (y[middle] - expected[middle]).abs().max() < 2e-3


def test_unreadable_audio_names_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.wav: no such audio file"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(DataError, match="text.wav: not a readable PCM WAV file"):
        read_wav(tmp_path / "text.wav")
    write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(DataError, match="empty.wav: the audio is empty"):
        read_wav(tmp_path / "empty.wav")


def test_spec_augment_masks_what_it_is_told():
    torch.manual_seed(0)
    feats = torch.randn(3, 100, 40) + 5.0
    lengths = torch.tensor([100, 60, 30])
    out = spec_augment(feats, lengths, freq_masks=1, freq_width=8, time_masks=1, time_width=20, max_time_ratio=0.2)
    for i, n in enumerate(lengths.tolist()):
        zero_bins = (out[i, :n] == 0).all(0).sum().item()
        zero_frames = (out[i, :n] == 0).all(1).sum().item()
        assert zero_bins <= 8 and zero_frames <= min(20, int(0.2 * n))
        changed = out[i] != feats[i]
        assert bool(((out[i] == 0) | ~changed).all())            # only zeros were written
    assert not torch.equal(out, feats)
    assert torch.equal(spec_augment(feats, lengths, 0, 8, 0, 20, 0.2), feats)


def test_vtlp_moves_a_tone_by_its_factor_and_keeps_the_band_edges():
    """A 1 kHz tone warped by a = 0.9 / 1.1 peaks in the band nearest 900 / 1100 Hz; a = 1 is the
    identity; the band at Nyquist stays (the warp is bent to keep it); factors are drawn per utterance."""
    rate = 8000
    t = torch.arange(rate) / rate
    feats = fbank(0.5 * torch.sin(2 * math.pi * 1000 * t), rate, 40)[None]
    centres = mel_centers(40, rate)
    assert torch.equal(vtlp(feats, 1.0, 1.0, rate), feats)
    for a in (0.9, 1.1):
        warped = vtlp(feats, a, a, rate)
        peak = centres[warped[0].mean(0).argmax()]
        assert int((centres - 1000 * a).abs().argmin()) == int((centres - peak).abs().argmin())
        ramp = vtlp(torch.arange(40.0).expand(1, 3, 40), a, a, rate)[0, 0]    # each band's source position
        assert abs(ramp[-1] - 39) < 1 and abs(ramp[20] - 20) > 1           # the top stays, the middle moves
    batch = feats.expand(16, -1, -1)
    out = vtlp(batch, 0.8, 1.2, rate, generator=torch.Generator().manual_seed(0))
    assert len({int(o.mean(0).argmax()) for o in out}) > 3                 # a factor of its own each


@pytest.fixture
def tiny_speech(tmp_path, shared_data):
    """A manifest of a few spoken digits (three per split) in a temporary data folder."""
    folder = tmp_path / "digits"
    folder.mkdir()
    (folder / "wav").symlink_to(shared_data / "fsdd" / "wav")
    words = ["zero", "one", "two"]
    for split, idx in (("train", range(10, 30)), ("valid", range(5, 7)), ("test", range(2))):
        rows = [f"wav/{d}_jackson_{i}.wav\t{words[d]}\tjackson" for d in range(3) for i in idx]
        (folder / f"{split}.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(rows) + "\n")
    recipe = {"task": "speech", "data": {"dir": str(folder), "sample_rate": 8000, "n_mels": 40,
                                         "cache_dir": str(tmp_path / "cache"), "time_width": 5},
              "tokenizer": {"name": "char"}, "model": {"arch": "transformer"},
              "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 8}, "metrics": ["wer", "cer"]}
    return tmp_path, recipe


def test_speech_task_features_cmvn_and_cache(tiny_speech, registry, monkeypatch):
    tmp_path, recipe = tiny_speech
    r = load_recipe(recipe)
    task = registry.get("tasks", "speech")(r.data, Path(r.data.dir), 1)
    train = task.examples("train")
    assert len(train) == 60 and train[0].target == "zero" and train[0].source.shape[1] == 40
    allf = torch.cat([ex.source for ex in train])
    assert allf.mean(0).abs().max() < 1e-4 and (allf.std(0) - 1).abs().max() < 1e-3
    assert list((tmp_path / "cache").glob("train-*.pt"))
    # a second read comes from the cache: computing features now would fail
    again = registry.get("tasks", "speech")(r.data, task.data_dir, 1)
    monkeypatch.setattr(type(again), "features_of", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert torch.equal(again.examples("train")[0].source, train[0].source)


def test_cmvn_per_speaker_and_per_utterance(tiny_speech, registry):
    """cmvn_level speaker: every speaker's frames (the unseen validation speaker's too) have mean zero
    after normalisation, which global CMVN does not give them; utterance: every utterance's do; both
    scale by one deviation fitted on the training split, so its frames keep unit deviation."""
    tmp_path, recipe = tiny_speech
    folder = Path(recipe["data"]["dir"])
    for split, speakers in (("train", ("jackson", "nicolas")), ("valid", ("theo",))):
        rows = [f"wav/{d}_{sp}_{i}.wav\t{d}\t{sp}" for sp in speakers for d in range(3) for i in range(4)]
        (folder / f"{split}.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(rows) + "\n")

    def task_with(level):
        r = load_recipe({**recipe, "data": {**recipe["data"], "cmvn_level": level}})
        return registry.get("tasks", "speech")(r.data, Path(r.data.dir), 1)

    def by_speaker(examples, split):
        speakers = [line.split("\t")[2] for line in (folder / f"{split}.tsv").read_text().splitlines()[1:]]
        out = {}
        for ex, sp in zip(examples, speakers):
            out.setdefault(sp, []).append(ex.source)
        return {sp: torch.cat(fs) for sp, fs in out.items()}

    speaker, utterance, plain = task_with("speaker"), task_with("utterance"), task_with("global")
    for split in ("train", "valid"):
        for sp, frames in by_speaker(speaker.examples(split), split).items():
            assert frames.mean(0).abs().max() < 1e-3, (split, sp)
        for ex in utterance.examples(split):
            assert ex.source.mean(0).abs().max() < 1e-3
        if split == "valid":
            assert by_speaker(plain.examples(split), split)["theo"].mean(0).abs().max() > 0.3
    for task in (speaker, utterance):
        allf = torch.cat([ex.source for ex in task.examples("train")])
        assert (allf.std(0) - 1).abs().max() < 1e-2
    one = utterance.prepare_source(folder / "wav" / "0_theo_0.wav")   # t2t generate: no speaker, its own mean
    assert one.mean(0).abs().max() < 1e-3
    # a checkpoint's statistics only load into a task that makes its features the same way
    again = task_with("speaker")
    again.load_state_dict(speaker.state_dict())
    assert torch.equal(again.mean, speaker.mean)
    with pytest.raises(T2TError, match=r"data.cmvn_level: speaker \(the recipe says global\)"):
        task_with("global").load_state_dict(speaker.state_dict())
    recipe["data"]["cmvn_level"] = "corpus"
    with pytest.raises(T2TError, match="cmvn_level"):
        load_recipe(recipe)


def test_validation_speakers_held_out_of_training(tiny_speech, registry):
    """data.valid_speakers: N training speakers become the validation split, whole, and leave
    training (statistics included); the test split still reads its own manifest."""
    tmp_path, recipe = tiny_speech
    folder = Path(recipe["data"]["dir"])
    speakers = ("jackson", "nicolas", "theo", "yweweler")
    rows = [f"wav/{d}_{sp}_{i}.wav\t{d}\t{sp}" for sp in speakers for d in range(3) for i in range(2)]
    (folder / "train.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(rows) + "\n")
    (folder / "valid.tsv").unlink()                     # never read: validation comes from train.tsv

    def task_with(n, seed=1):
        r = load_recipe({**recipe, "data": {**recipe["data"], "valid_speakers": n}})
        return registry.get("tasks", "speech")(r.data, Path(r.data.dir), seed)

    def speaker_of(task, split):
        return [row[3] for row in task._manifest(split)]

    task = task_with(1)
    valid, train = task.examples("valid"), task.examples("train")
    held = set(speaker_of(task, "valid"))
    assert len(held) == 1 and len(valid) == 6 and len(train) == 18
    assert held.isdisjoint(speaker_of(task, "train"))
    assert sorted(ex.source.shape[0] for ex in valid + train) == \
        sorted(ex.source.shape[0] for ex in task_with(0).examples("train"))     # a division, nothing lost
    assert len(task.examples("test")) == 6
    allf = torch.cat([ex.source for ex in train])                              # CMVN fitted without them
    assert allf.mean(0).abs().max() < 1e-4
    assert {s for seed in range(1, 9) for s in speaker_of(task_with(1, seed), "valid")} != held   # the seed draws
    with pytest.raises(DataError, match="valid_speakers: 4 would leave no training speaker"):
        task_with(4).examples("train")
    (folder / "train.tsv").write_text("path\ttranscript\n" + "\n".join(r.rsplit("\t", 1)[0] for r in rows) + "\n")
    with pytest.raises(DataError, match="needs a speaker for every training utterance"):
        task_with(1).examples("valid")


def test_extra_training_manifests_join_training_only(tiny_speech, registry):
    """data.extra_train: another folder's manifest (resolved under --data-dir, its audio under its own
    folder) adds to the training split alone; validation speakers are drawn from the main manifest;
    the extra folder's files key prepared data."""
    from t2t.dataset import Store
    from t2t.assembly import build_task
    tmp_path, recipe = tiny_speech
    folder = Path(recipe["data"]["dir"])
    rows = [f"wav/{d}_{sp}_{i}.wav\t{d}\t{sp}" for sp in ("jackson", "nicolas") for d in range(3) for i in range(2)]
    (folder / "train.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(rows) + "\n")
    other = tmp_path / "corpora" / "other"
    other.mkdir(parents=True)
    (other / "audio").symlink_to(folder / "wav")
    words = ["ZERO", "ONE", "TWO"]
    extra = [f"audio/{d}_theo_{i}.wav\t{words[d]}\ttheo" for d in range(3) for i in range(3)]
    (other / "train.tsv").write_text("path\ttranscript\tspeaker\n" + "\n".join(extra) + "\n")

    def task_with(**data):
        r = load_recipe({**recipe, "data": {**recipe["data"], **data}})
        return build_task(r, registry, tmp_path / "corpora"), r

    plain, _ = task_with(valid_speakers=1)
    task, r = task_with(valid_speakers=1, extra_train=["other/train.tsv"])
    train, valid = task.examples("train"), task.examples("valid")
    assert [ex.id for ex in valid] == [ex.id for ex in plain.examples("valid")]       # the same held-out speaker
    assert {row[3] for row in task._manifest("valid")} <= {"jackson", "nicolas"}
    added = [ex for ex in train if ex.id.startswith("other/train.tsv:")]
    assert len(train) == len(plain.examples("train")) + 9 and len(added) == 9
    assert [ex.target for ex in added[:4]] == ["zero", "zero", "zero", "one"]            # lower-cased like the rest
    theo = task.features_of(resample(*read_wav(folder / "wav" / "0_theo_0.wav"), 8000))   # its audio, read
    assert added[0].source.shape == theo.shape
    assert len(task.examples("test")) == len(plain.examples("test"))
    absolute, _ = task_with(extra_train=[str(other / "train.tsv")])                 # an absolute path as given
    assert len(absolute.examples("train")) == 12 + 9
    key = Store(tmp_path / "prep", task, r).base
    assert {"train.tsv", os.path.join("audio", "0_theo_0.wav")} <= {f[0] for f in key["other_files"][str(other)]}
    (other / "notes.txt").write_text("a file more")
    assert Store(tmp_path / "prep", task, r).base != key                            # its files key the data
    assert "other_files" not in Store(tmp_path / "prep", plain, r).base
    missing, _ = task_with(extra_train=["nowhere/train.tsv"])
    with pytest.raises(DataError, match="nowhere/train.tsv: no such manifest"):
        missing.examples("train")
    with pytest.raises(Exception, match="extra_train"):
        task_with(extra_train=["other/train.txt"])


def test_vtlp_is_a_training_augmentation_with_checked_factors(tiny_speech, registry):
    tmp_path, recipe = tiny_speech
    r = load_recipe({**recipe, "data": {**recipe["data"], "vtlp": [0.9, 1.1], "spec_augment": False}})
    task = registry.get("tasks", "speech")(r.data, Path(r.data.dir), 1)
    src = torch.randn(4, 30, 40)
    torch.manual_seed(0)
    out = task.augment(src, torch.full((4,), 30))
    torch.manual_seed(0)
    assert torch.equal(out, vtlp(src, 0.9, 1.1, 8000)) and not torch.equal(out, src)
    for bad, message in (({"vtlp": [1.1, 0.9]}, "low <= high"), ({"vtlp": [0.9, 1.1], "features": "mfcc"}, "fbank")):
        with pytest.raises(Exception, match=message):
            load_recipe({**recipe, "data": {**recipe["data"], **bad}})


def test_speed_perturbation_adds_resampled_training_copies(tiny_speech, registry):
    tmp_path, recipe = tiny_speech
    plain = load_recipe(recipe)
    recipe["data"]["speed_perturb"] = [0.9, 1.0, 1.1]
    r = load_recipe(recipe)
    task = registry.get("tasks", "speech")(r.data, Path(r.data.dir), 1)
    train = task.examples("train")
    assert len(train) == 180
    plain_task = registry.get("tasks", "speech")(plain.data, Path(plain.data.dir), 1)
    base = plain_task.examples("train")
    assert torch.equal(train[0].source, base[0].source)                  # speed 1.0 is the plain copy
    assert torch.equal(task.mean, plain_task.mean)                      # statistics of the 1.0 copy alone
    by_id = {ex.id: ex for ex in train}
    for ex in base[:5]:
        slow, fast = by_id[f"{ex.id}@0.9"], by_id[f"{ex.id}@1.1"]
        assert slow.target == fast.target == ex.target
        n = ex.source.shape[0]
        # 10 ms frames: played at 0.9 the audio lasts 1/0.9 as long, at 1.1 1/1.1 as long
        assert abs(slow.source.shape[0] - n / 0.9) <= 3 and abs(fast.source.shape[0] - n / 1.1) <= 3
    assert len(task.examples("valid")) == 6                              # evaluation splits are never copied
    recipe["data"]["speed_perturb"] = [0.1]
    with pytest.raises(Exception, match="speed_perturb"):
        load_recipe(recipe)


def test_speech_recipe_end_to_end_and_augment_only_in_training(tiny_speech, registry, monkeypatch):
    tmp_path, recipe = tiny_speech
    calls = []
    cls = registry.get("tasks", "speech")
    original = cls.augment
    monkeypatch.setattr(cls, "augment", lambda self, src, lengths: calls.append(src.shape[0]) or original(self, src, lengths))
    result = tiny_run(recipe_file(tmp_path, recipe), tmp_path, steps=6, registry=registry)
    assert len(calls) == 6                                        # once per training batch
    assert set(result["report"]["metrics"]) == {"wer", "cer"}
    assert len(calls) == 6                                        # evaluation and generation never augment
    from t2t.pipeline import load
    pipe = load(result["run_dir"], device="cpu")
    assert pipe.task.mean is not None                            # CMVN statistics came with the checkpoint
    wav = str(tmp_path / "digits" / "wav" / "1_jackson_0.wav")
    assert isinstance(pipe.generate([wav])[0], str)
    with pytest.raises(T2TError, match="model.ctc_weight"):             # joint decoding needs a CTC head
        pipe.generate([wav], ctc_weight=0.3)


def test_joint_ctc_decoding_from_a_recipe(tiny_speech, registry):
    tmp_path, recipe = tiny_speech
    recipe["model"] = {"arch": "transformer", "dim": 32, "heads": 2, "ff_dim": 64, "layers": 1, "ctc_weight": 0.5,
                       "subsample_channels": 8}
    recipe["decode"].update(beam=3, ctc_weight=0.4)
    result = tiny_run(recipe_file(tmp_path, recipe), tmp_path, steps=6, registry=registry)
    assert result["report"]["decode"]["ctc_weight"] == 0.4
    from t2t.pipeline import load
    pipe = load(result["run_dir"], device="cpu")
    convs = [m for m in pipe.model.src_embed.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 8), (8, 8)]    # model.subsample_channels
    wav = str(tmp_path / "digits" / "wav" / "1_jackson_0.wav")
    joint = pipe.search([wav])[0][0]
    plain = pipe.search([wav], pipe.decode_options(ctc_weight=0.0))[0][0]
    assert joint.score != plain.score                                    # the CTC term took part
