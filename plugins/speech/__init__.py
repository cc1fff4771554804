"""Speech -> text: a manifest of audio files and transcripts, turned into log-mel (or MFCC) frames.

The manifest is a TSV (header with `path` and `transcript` columns; `speaker` optional) or JSON
Lines, one utterance a line, paths relative to the data folder. Features are computed in torch,
cached on disk under a key of the feature settings and the file list, normalised with global
mean and variance from the training split (stored with every checkpoint) and augmented with
SpecAugment during training only. With `concat`, utterances of one speaker are joined with short
silences into longer ones (spoken digit sequences from single digits, say).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Iterator, Literal, Optional

import torch

import t2t
from t2t import checkpoint as ckpt
from t2t.data import read_jsonl, read_tsv
from t2t.errors import DataError, T2TError
from t2t.options import DataOptions, OptionError, option
from t2t.pretrained.whisper import log_mel
from t2t_plugins.speech.features import fbank, mfcc, read_wav, resample, spec_augment, vtlp

log = logging.getLogger("t2t")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechOptions(DataOptions):
    format: Literal["tsv", "jsonl"] = option("tsv", help="manifest format: {split}.tsv or {split}.jsonl")
    path_field: str = option("path", help="manifest column with the audio path (relative to the data folder)")
    text_field: str = option("transcript", help="manifest column with the transcript")
    splits: dict[str, str] = option(factory=dict, help="manifest stem of each split, e.g. {test: valid}")
    sample_rate: int = option(16000, min=1000, help="audio is resampled to this rate when it differs")
    features: Literal["fbank", "mfcc", "whisper"] = option("fbank", help="log-mel filterbanks, MFCC, or Whisper's "
                                                         "log-mel spectrogram of 30 s (n_mels bins; set by a "
                                                         "Whisper folder)")
    n_mels: int = option(80, min=8, help="mel bands")
    n_mfcc: int = option(13, min=2, help="cepstra when features: mfcc")
    frame_ms: float = option(25.0, min=5.0, help="window length")
    hop_ms: float = option(10.0, min=1.0, help="frame shift")
    window: Literal["povey", "hann", "hamming"] = option("povey", help="analysis window")
    dither: float = option(0.0, min=0.0, help="Gaussian dither (in [-1, 1] sample units) added when extracting "
                                             "training features, as Kaldi does; never at evaluation")
    speed_perturb: tuple[float, ...] = option((1.0,), help="speed factors of the training audio: each "
                                              "adds a resampled copy of the training split (Kaldi's 0.9, 1.0, 1.1)")
    cmvn: bool = option(True, help="normalise with mean and variance of the training features")
    cmvn_level: Literal["global", "speaker", "utterance"] = option(
        "global", help="whose mean is subtracted before scaling by the training features' deviation: the "
        "training split's (global), each speaker's over all of that speaker's utterances in the split (the "
        "manifest's speaker column; Kaldi's per-speaker CMVN, which reads a test speaker's audio, not its "
        "transcripts), or each utterance's own")
    vtlp: tuple[float, float] = option((1.0, 1.0), help="vocal tract length perturbation of training batches: "
                                       "each utterance's frequencies scaled by a factor drawn from [low, high], "
                                       "e.g. [0.9, 1.1]; [1, 1] is off (log-mel features only)")
    spec_augment: bool = option(True, help="SpecAugment on training batches")
    freq_masks: int = option(2, min=0, help="SpecAugment: frequency masks per utterance")
    freq_width: int = option(15, min=0, help="SpecAugment: widest frequency mask (mel bins)")
    time_masks: int = option(2, min=0, help="SpecAugment: time masks per utterance")
    time_width: int = option(40, min=0, help="SpecAugment: longest time mask (frames)")
    max_time_ratio: float = option(0.2, min=0.0, max=1.0, help="SpecAugment: a time mask covers at most this share")
    lowercase: bool = option(True, help="lower-case transcripts")
    valid_speakers: int = option(0, min=0, help="hold out this many training speakers (drawn with the seed) "
                                 "as the validation split, which then reads no manifest of its own: "
                                 "checkpoints are chosen on speakers the test split does not have")
    concat: tuple[int, int] = option((1, 1), help="join this many (min, max) utterances of one speaker")
    concat_sizes: dict[str, int] = option(factory=dict, help="with concat: utterances made per split")
    silence_ms: tuple[int, int] = option((100, 300), help="with concat: pause between the joined utterances")
    extra_train: tuple[str, ...] = option((), help="more training manifests, each a path like data.dir's "
                                          "(absolute or under --data-dir, e.g. an4/train.tsv; its audio paths "
                                          "relative to its own folder): their utterances join the training "
                                          "split only, never validation (data.valid_speakers draws from "
                                          "the main manifest) or test")
    cache_dir: Optional[str] = option(None, help="feature cache (default ~/.cache/t2t/features)")

    def check(self) -> None:
        if not 1 <= self.concat[0] <= self.concat[1]:
            raise OptionError("concat", f"{list(self.concat)} must be [min, max] with 1 <= min <= max")
        bad = [f for f in self.speed_perturb if not 0.5 <= f <= 2.0]
        if bad or not self.speed_perturb:
            raise OptionError("speed_perturb", f"{list(self.speed_perturb)}: give factors between 0.5 and 2.0, "
                              "e.g. [0.9, 1.0, 1.1]")
        if not 0.5 <= self.vtlp[0] <= self.vtlp[1] <= 2.0:
            raise OptionError("vtlp", f"{list(self.vtlp)} must be [low, high] with 0.5 <= low <= high <= 2.0")
        if self.vtlp != (1.0, 1.0) and self.features != "fbank":
            raise OptionError("vtlp", "warps mel bands: it needs features: fbank (cepstra have no frequency axis)")
        bad = [m for m in self.extra_train if not m.endswith((".tsv", ".jsonl"))]
        if bad:
            raise OptionError("extra_train", f"{bad}: name manifest files ending in .tsv or .jsonl")
        if self.valid_from_train is not None:
            raise OptionError("valid_from_train", "speech holds training speakers out instead, so that no "
                              "speaker (and no speed-perturbed copy) is on both sides: use data.valid_speakers")


# the options that shape the features a model sees at evaluation (stored with its statistics)
EVAL_FEATURE_KEYS = ("sample_rate", "features", "n_mels", "n_mfcc", "frame_ms", "hop_ms", "window")


class Speech(t2t.Task):
    """Audio recordings -> their transcripts (speech recognition; translation with other targets)."""

    name = "speech"
    Options = SpeechOptions
    source_kind = "features"
    default_metrics = ("wer", "cer")

    def __init__(self, options: SpeechOptions, data_dir=None, seed: int = 1):
        super().__init__(options, data_dir, seed)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def feature_dim(self) -> int:
        return self.options.n_mfcc if self.options.features == "mfcc" else self.options.n_mels

    # ------------------------------------------------------------------ reading
    def read(self, split: str) -> Iterator[t2t.Example]:
        rows = self._rows(split)
        feats = self._features(split, rows)
        if self.options.cmvn and self.mean is None:
            if split == "train":
                self._fit_cmvn(feats, rows)
            else:
                train_rows = self._rows("train")
                self._fit_cmvn(self._features("train", train_rows), train_rows)
        for (utt_id, _, text, _), f, offset in zip(rows, feats, self._offsets(rows, feats)):
            yield t2t.Example(self._normalise(f, offset), text, id=utt_id)
        if split == "train":                    # speed-perturbed copies; the statistics stay those of 1.0
            for speed in (s for s in self.options.speed_perturb if s != 1.0):
                copies = self._features(split, rows, speed)
                for (utt_id, _, text, _), f, offset in zip(rows, copies, self._offsets(rows, copies)):
                    yield t2t.Example(self._normalise(f, offset), text, id=f"{utt_id}@{speed:g}")

    def _rows(self, split: str):
        """The split's utterances: its manifest's (joined under `concat`), then for training the
        extra manifests' as they are."""
        rows = self._manifest(split)
        if self.options.concat != (1, 1):
            rows = self._concatenate(rows, split)
        if split == "train":
            for manifest in self.options.extra_train:
                path = self.data_path(manifest)
                rows += self._read_manifest_file(path, path.parent, f"{path.parent.name}/")
        return rows

    def other_data_folders(self) -> list[Path]:
        return [self.data_path(m).parent for m in self.options.extra_train]

    def _manifest(self, split: str) -> list[tuple[str, list[Path], str, str]]:
        """(utterance id, audio files, transcript, speaker) for each line of the split's manifest;
        with `valid_speakers`, train and valid share the training manifest, divided by speaker."""
        if not self.options.valid_speakers or split not in ("train", "valid"):
            return self._read_manifest(split)
        rows = self._read_manifest("train")
        held = self._held_out_speakers(rows)
        return [r for r in rows if (r[3] in held) == (split == "valid")]

    def _held_out_speakers(self, rows) -> set[str]:
        n = self.options.valid_speakers
        speakers = sorted({r[3] for r in rows})
        if "" in speakers:
            raise DataError(f"data.valid_speakers needs a speaker for every training utterance; "
                            f"{sum(not r[3] for r in rows)} have none (the manifest's 'speaker' column)")
        if n >= len(speakers):
            raise DataError(f"data.valid_speakers: {n} would leave no training speaker "
                            f"(the training manifest has {len(speakers)})")
        return set(random.Random(f"speech-valid-speakers/{self.seed}").sample(speakers, n))

    def _read_manifest(self, split: str) -> list[tuple[str, list[Path], str, str]]:
        o = self.options
        return self._read_manifest_file(self.path(f"{o.splits.get(split, split)}.{o.format}"), self.data_dir)

    def _read_manifest_file(self, path: Path, audio_dir: Path, prefix: str = "") -> list[tuple[str, list[Path], str, str]]:
        """(id, [audio file], transcript, speaker) of each line of a TSV or JSON Lines manifest, its
        audio paths relative to `audio_dir`; ids start with `prefix`."""
        o = self.options
        if not path.exists():
            raise DataError(f"{path}: no such manifest" + (" (data.extra_train)" if prefix else ""))
        reader = read_tsv(path, self.problems) if path.suffix == ".tsv" else read_jsonl(path, self.problems)
        rows = []
        for lineno, row in reader:
            if o.path_field not in row or o.text_field not in row:
                raise DataError(f"{path}:{lineno}: needs the fields '{o.path_field}' and '{o.text_field}', "
                                f"has {sorted(row)}")
            text = " ".join(str(row[o.text_field]).split())
            text = text.lower() if o.lowercase else text
            if not text:
                self.problems.report(f"{path}:{lineno}", "empty transcript")
                continue
            rows.append((f"{prefix}{path.name}:{lineno}", [audio_dir / row[o.path_field]], text,
                         row.get("speaker", "")))
        return rows

    def _concatenate(self, rows, split: str):
        """Utterances of 2-5 (say) recordings of one speaker, chosen deterministically from the seed."""
        o = self.options
        by_speaker: dict[str, list] = {}
        for _utt_id, files, text, speaker in rows:
            by_speaker.setdefault(speaker, []).append((files[0], text))
        rng = random.Random(f"speech-concat/{self.seed}/{split}")
        speakers = sorted(by_speaker)
        size = o.concat_sizes.get(split, len(rows))
        out = []
        for i in range(size):
            speaker = rng.choice(speakers)
            pool = by_speaker[speaker]
            picks = [rng.choice(pool) for _ in range(rng.randint(*o.concat))]
            out.append((f"{split}-concat-{i}", [p[0] for p in picks], " ".join(p[1] for p in picks), speaker))
        return out

    # ------------------------------------------------------------------ features
    def _settings(self) -> dict:
        o = self.options
        keys = EVAL_FEATURE_KEYS + ("dither", "silence_ms")
        # version 2 of Whisper's features keeps only the frames the audio reaches
        return {k: getattr(o, k) for k in keys} | {"seed": self.seed, "version": 2 if o.features == "whisper" else 1}

    def _features(self, split: str, rows, speed: float = 1.0) -> list[torch.Tensor]:
        """Features of every utterance (played at `speed`), from the cache when the settings and
        files are unchanged."""
        settings = self._settings() | ({"speed": speed} if speed != 1.0 else {})
        key_src = json.dumps({"settings": settings, "files": [[str(f) for f in r[1]] for r in rows],
                              "stat": [os.stat(f).st_mtime_ns for r in rows[:50] for f in r[1] if f.exists()]},
                             sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        cache = Path(self.options.cache_dir or Path.home() / ".cache" / "t2t" / "features") / f"{split}-{key}.pt"
        if cache.exists():
            try:
                return torch.load(cache, weights_only=True)["features"]
            except Exception:                    # a damaged cache file is rebuilt, never trusted
                cache.unlink(missing_ok=True)
        rng = random.Random(f"speech-silence/{self.seed}/{split}")
        dither = torch.Generator().manual_seed(self.seed) if split == "train" and self.options.dither else None
        feats = [self.features_of(self._audio(r[1], rng, speed), dither) for r in rows]
        cache.parent.mkdir(parents=True, exist_ok=True)
        ckpt.atomic_write(cache, lambda f: torch.save({"features": feats}, f))
        log.info(f"features of {len(feats)} {split} utterances{f' at speed {speed:g}' if speed != 1.0 else ''} "
                 f"cached in {cache}")
        return feats

    def _audio(self, files: list[Path], rng: random.Random, speed: float = 1.0) -> torch.Tensor:
        """The files' samples at the recipe's rate, joined by pauses; `speed` > 1 plays them faster
        (and higher), as a tape would: the samples are resampled as if recorded at rate * speed."""
        o = self.options
        pieces = []
        for k, f in enumerate(files):
            x, rate = read_wav(f)
            pieces.append(resample(x, round(rate * speed), o.sample_rate))
            if k < len(files) - 1:
                pieces.append(torch.zeros(int(o.sample_rate * rng.randint(*o.silence_ms) / 1000)))
        return self._whole(torch.cat(pieces), files)

    def _whole(self, samples: torch.Tensor, files) -> torch.Tensor:
        """The samples, where the features take them whole (Whisper's: at most 30 s)."""
        o = self.options
        if o.features == "whisper" and samples.shape[0] > 30 * o.sample_rate:
            raise DataError(f"{', '.join(map(str, files))}: {samples.shape[0] / o.sample_rate:.1f} s of audio; "
                            f"Whisper's front end takes at most 30 s (longer recordings are not cut into pieces yet)")
        return samples

    def features_of(self, samples: torch.Tensor, dither: torch.Generator | None = None) -> torch.Tensor:
        """(frames, feature_dim) of audio samples at the recipe's rate, not normalised; dithered only
        when given a generator (training features)."""
        o = self.options
        if o.features == "whisper":
            return log_mel(samples, o.n_mels, o.sample_rate, n_fft=round(o.frame_ms * o.sample_rate / 1000),
                           hop=round(o.hop_ms * o.sample_rate / 1000), dither=o.dither if dither is not None else 0.0,
                           generator=dither, trim=True)           # the model's stem puts the silence back
        feats = fbank(samples, o.sample_rate, o.n_mels, o.frame_ms, o.hop_ms, window=o.window,
                      dither=o.dither if dither is not None else 0.0, generator=dither)
        return mfcc(feats, o.n_mfcc) if o.features == "mfcc" else feats

    def _offsets(self, rows, feats: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The mean each utterance loses before global normalisation: none (global), its speaker's
        (mean of all the speaker's frames in `feats`; an utterance without a speaker uses its own)
        or its own."""
        level = self.options.cmvn_level
        if not self.options.cmvn or level == "global":
            return [None] * len(feats)
        if level == "utterance":
            return [f.double().mean(0) for f in feats]
        sums: dict[str, tuple[torch.Tensor, int]] = {}
        for (_, _, _, speaker), f in zip(rows, feats):
            if speaker:
                total, n = sums.get(speaker, (0.0, 0))
                sums[speaker] = (total + f.double().sum(0), n + f.shape[0])
        return [sums[r[3]][0] / sums[r[3]][1] if r[3] else f.double().mean(0) for r, f in zip(rows, feats)]

    def _fit_cmvn(self, feats: list[torch.Tensor], rows) -> None:
        offsets = self._offsets(rows, feats)
        allf = torch.cat([f.double() - (0.0 if m is None else m) for f, m in zip(feats, offsets)])
        self.mean, self.std = allf.mean(0).float(), allf.std(0).clamp(min=1e-5).float()

    def _normalise(self, f: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        if not self.options.cmvn:
            return f
        return ((f.double() - offset).float() if offset is not None else f).sub(self.mean).div(self.std)

    def prepare_source(self, source):
        """`t2t generate` input: an audio path (a feature tensor passes through)."""
        if isinstance(source, torch.Tensor):
            return source
        path = Path(str(source).strip())
        if not path.is_absolute() and self.data_dir is not None and not path.exists():
            path = self.data_dir / path
        x, rate = read_wav(path)
        feats = self.features_of(self._whole(resample(x, rate, self.options.sample_rate), [path]))
        return self._normalise(feats, self._offsets([(path.name, [path], "", "")], [feats])[0])   # no speaker: its own mean

    def augment(self, src: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        o = self.options
        if o.vtlp != (1.0, 1.0):
            src = vtlp(src, *o.vtlp, rate=o.sample_rate)
        if not o.spec_augment:
            return src
        return spec_augment(src, lengths, o.freq_masks, o.freq_width, o.time_masks, o.time_width, o.max_time_ratio)

    def _feature_settings(self) -> dict:
        return {k: getattr(self.options, k) for k in EVAL_FEATURE_KEYS + ("cmvn", "cmvn_level")}

    def state_dict(self) -> dict:
        if self.mean is None:
            return {}
        return {"mean": self.mean, "std": self.std, "features": self._feature_settings()}

    def load_state_dict(self, state: dict) -> None:
        """The training statistics; the settings that shape evaluation features must be the ones
        the model was trained with (a checkpoint from before they were stored is not checked)."""
        if not state:
            return
        differ = {k: v for k, v in state.get("features", {}).items() if self._feature_settings().get(k) != v}
        if differ:
            raise T2TError("the model was trained on features made with " +
                           ", ".join(f"data.{k}: {v} (the recipe says {getattr(self.options, k)})" for k, v in differ.items()) +
                           "; evaluate with the training recipe's feature settings")
        self.mean, self.std = state["mean"], state["std"]


@t2t.hookimpl
def t2t_register_tasks(register):
    register(Speech)
