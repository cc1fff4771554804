"""Whisper folders against `transformers`, on tiny random models it builds offline: the log-mel
front end against WhisperFeatureExtractor, teacher-forced logits, greedy and beam outputs with
their scores under the folder's prompt and suppressed tokens, export round trips, fine-tuning
from a speech recipe, and the messages bad folders, recipes and audio get."""

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers (a test-only reference) is not installed: "
                                   "pip install 't2t[test]'")

import hf_folders  # noqa: E402
from t2t.errors import RecipeError, T2TError  # noqa: E402
from t2t.pipeline import load  # noqa: E402
from t2t.pretrained.whisper import log_mel  # noqa: E402

TEXTS = ["the cat", "hello world", "fish and chips", "a dog runs quickly", "zebra", "it's the world"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hf_folders.whisper(tmp_path_factory.mktemp("whisper") / "tiny")


@pytest.fixture(scope="module")
def reference(folder):
    return transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def extractor(folder):
    return transformers.WhisperFeatureExtractor.from_pretrained(folder)


def features(audio, n_mels=80):
    return torch.stack([log_mel(torch.from_numpy(a), n_mels) for a in audio])


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_equals_the_feature_extractor_on_tones(n_mels):
    fe = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    audio = hf_folders.tones(4, seed=n_mels) + [np.zeros(100, np.float32), 0.5 * np.ones(16000 * 31, np.float32)]
    ref = fe(audio, sampling_rate=16000, return_tensors="pt").input_features.transpose(1, 2)
    ours = features(audio, n_mels)
    assert ours.shape == (6, 3000, n_mels)
    assert (ours - ref).abs().max() < 1e-4


def test_log_mel_equals_the_feature_extractor_on_real_recordings(shared_data):
    from t2t_plugins.speech.features import read_wav, resample
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    paths = sorted((shared_data / "fsdd" / "wav").glob("*.wav"))[:8]
    audio = [resample(*read_wav(p), 16000).numpy() for p in paths]        # FSDD's 8 kHz, t2t's resampler
    ref = fe(audio, sampling_rate=16000, return_tensors="pt").input_features.transpose(1, 2)
    assert (features(audio) - ref).abs().max() < 1e-4


def test_trimmed_features_rebuild_the_full_ones(folder, reference):
    """The cache keeps only the frames the audio reaches (`log_mel(trim=True)`); the stem fills in
    the silence after them: the frames and logits equal those of the full 30 s."""
    audio = hf_folders.tones(5, seed=4) + [np.zeros(8000, dtype=np.float32)]          # a silent one too
    full = features(audio)
    trimmed = [log_mel(torch.from_numpy(a), 80, trim=True) for a in audio]
    pipe = load(folder, device="cpu")
    stem = pipe.model.src_embed
    lengths = torch.tensor([t.shape[0] for t in trimmed])
    assert lengths.max() < 700 and all(torch.equal(t, f[: len(t)]) for t, f in zip(trimmed, full))
    batch = torch.nn.utils.rnn.pad_sequence(trimmed, batch_first=True)            # zeros after each, as collate
    rebuilt, new_lengths = stem.fill(batch, lengths)
    assert (rebuilt - full).abs().max() < 1e-6 and new_lengths.tolist() == [3000] * len(audio)
    dec_in = torch.tensor([[pipe.tgt_tok.vocab.bos, 40, 50]] * len(audio))
    with torch.no_grad():
        ours = pipe.model(batch, lengths, dec_in)
        theirs = reference(input_features=full.transpose(1, 2), decoder_input_ids=dec_in).logits
    assert (ours - theirs).abs().max() < 1e-4


def test_logits_equal_transformers(folder, reference):
    pipe = load(folder, device="cpu")
    sp = pipe.tgt_tok.specials("en")
    audio = hf_folders.tones(3, seed=2)
    prompt = list(sp.prompt)
    ids = [[sp.bos] + prompt + pipe.tgt_tok.backend.encode(t, add_special_tokens=False).ids
           for t in TEXTS[:3]]
    width = max(map(len, ids))
    dec_in = torch.tensor([x + [sp.pad] * (width - len(x)) for x in ids])
    src = features(audio)
    with torch.no_grad():
        ref = reference(input_features=src.transpose(1, 2), decoder_input_ids=dec_in).logits
        ours = pipe.model(src, torch.full((3,), 3000), dec_in)
    assert ref.std(-1).mean() > 0.2                              # weights large enough for details to show
    assert (ours - ref).abs().max() < 1e-4


SEARCHES = [(1, 1.0), (3, 1.0), (4, 0.5), (4, 2.0)]       # beam, length penalty


@pytest.mark.parametrize("lang", ["en", "de"])
@pytest.mark.parametrize("beam,alpha", SEARCHES)
def test_search_equals_generate(folder, reference, lang, beam, alpha):
    pipe = load(folder, device="cpu")
    audio = hf_folders.tones(6, seed=1)
    with torch.no_grad():
        out = reference.generate(features(audio).transpose(1, 2), language=lang, task="transcribe", num_beams=beam,
                                 length_penalty=alpha, max_new_tokens=20, return_dict_in_generate=True,
                                 output_scores=beam > 1)
    hyps = pipe.search([features([a])[0] for a in audio],
                       pipe.decode_options(beam=beam, length_penalty=alpha, target_lang=lang, max_len_b=20))
    sp = pipe.tgt_tok.specials(lang)
    prompt = 1 + len(sp.prompt)
    lengths = set()
    for i, row in enumerate(out.sequences.tolist()):
        assert row[:prompt] == [sp.bos, *sp.prompt]
        tokens = row[prompt:]
        tokens = tokens[: tokens.index(sp.eos)] if sp.eos in tokens else tokens
        assert hyps[i][0].tokens == tokens, i
        lengths.add(len(tokens))
        if beam > 1:
            assert abs(hyps[i][0].score - float(out.sequences_scores[i])) < 1e-4
    assert len(lengths) >= 2 or alpha > 1, lengths      # outputs end at different lengths (alpha 2 favours the longest)


def test_the_language_is_found_as_generate_finds_it(folder, reference):
    """No language named: each recording's is the language token scored highest after
    <|startoftranscript|>, as transformers' generate detects it, and it is decoded in it."""
    pipe = load(folder, device="cpu")
    audio = hf_folders.tones(12, seed=5)
    src = features(audio)
    with torch.no_grad():
        logits = reference(input_features=src.transpose(1, 2),
                           decoder_input_ids=torch.full((len(audio), 1), pipe.tgt_tok.vocab.bos)).logits[:, -1]
        out = reference.generate(src.transpose(1, 2), task="transcribe", num_beams=1, max_new_tokens=12)
    languages = pipe.tgt_tok.languages
    theirs = [min(languages, key=lambda c: -float(row[languages[c]])) for row in logits]
    found = pipe.detect_languages(list(src))
    assert found == theirs and len(set(found)) >= 2, found               # several languages among them
    hyps = pipe.search(list(src), pipe.decode_options(beam=1, max_len_b=12))
    for i, tokens in enumerate(out.tolist()):
        sp = pipe.tgt_tok.specials(found[i])
        if tokens[0] == sp.bos:         # (transformers 5 leaves the prompt out where it found the language)
            assert tokens[: 1 + len(sp.prompt)] == [sp.bos, *sp.prompt], i
            tokens = tokens[1 + len(sp.prompt):]
        tokens = tokens[: tokens.index(sp.eos)] if sp.eos in tokens else tokens
        assert hyps[i][0].tokens == tokens, i
    assert pipe.generate([str(hf_folders.write_wav(Path(tempfile.mkdtemp()) / "a.wav", audio[0], 16000))]) == \
        [pipe.detokenize(hyps[0][0].tokens)]


def test_a_folder_is_evaluated_without_a_language_named(folder, recordings, tmp_path):
    from t2t.evaluation import evaluate
    from t2t.recipe import load_recipe
    recipe = speech_recipe(folder, recordings, tmp_path)
    del recipe["tokenizer"]
    report = evaluate(folder, load_recipe(recipe), split="test", device="cpu")
    assert "wer" in report["metrics"] and "reference_ppl" not in report     # references' prompt unknown


def test_an_english_only_folder_prompts_no_language(tmp_path):
    folder = hf_folders.whisper(tmp_path / "en", multilingual=False, seed=3)
    reference = transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()
    pipe = load(folder, device="cpu")
    assert pipe.specials.prompt == (pipe.tgt_tok.no_timestamps,)
    audio = hf_folders.tones(4, seed=5)
    with torch.no_grad():
        out = reference.generate(features(audio).transpose(1, 2), num_beams=3, max_new_tokens=15, output_scores=True,
                                 return_dict_in_generate=True)
    hyps = pipe.search([features([a])[0] for a in audio], pipe.decode_options(beam=3, max_len_b=15))
    for i, row in enumerate(out.sequences.tolist()):
        tokens = row[2:]
        tokens = tokens[: tokens.index(pipe.specials.eos)] if pipe.specials.eos in tokens else tokens
        assert hyps[i][0].tokens == tokens
        assert abs(hyps[i][0].score - float(out.sequences_scores[i])) < 1e-4
    with pytest.raises(T2TError, match="no language codes"):
        pipe.generate([features(audio[:1])[0]], target_lang="en")


BROKEN = [  # what each test below breaks once; the parity above fails with each
    ("the stem without GELU", "stem"), ("sinusoids instead of the learned positions", "positions"), ("post-norm layers", "norm"),
    ("no prompt", "prompt"), ("begin-suppressed tokens allowed first", "banned_first"),
    ("suppressed tokens allowed", "banned"), ("log-mel without its floor", "floor")]


@pytest.mark.parametrize("what,detail", BROKEN)
def test_a_detail_broken_shows(folder, reference, monkeypatch, what, detail):
    from t2t.models import frontend
    from t2t.models.transformer import Transformer
    pipe = load(folder, device="cpu")
    audio = hf_folders.tones(4, seed=1)
    if detail == "floor":
        import t2t.pretrained.whisper as w
        monkeypatch.setattr(torch, "maximum", lambda a, b: a)
        ours = torch.stack([w.log_mel(torch.from_numpy(a)) for a in audio])
        monkeypatch.undo()
        fe = transformers.WhisperFeatureExtractor.from_pretrained(folder)
        ref = fe(audio, sampling_rate=16000, return_tensors="pt").input_features.transpose(1, 2)
        assert (ours - ref).abs().max() > 1e-2
        return
    if detail in ("stem", "positions", "norm"):
        if detail == "stem":
            def linear_stem(self, src, lengths):
                return self.conv2(self.conv1(src.transpose(1, 2))).transpose(1, 2), (lengths + 1) // 2
            monkeypatch.setattr(frontend.Conv1dStem, "forward", linear_stem)
        change = {"positions": {"positions": "sinusoidal"}, "norm": {"norm": "post"}}.get(detail, {})
        model = Transformer(dataclasses.replace(pipe.model.options, **change), pipe.model.spec)
        model.load_state_dict(pipe.model.state_dict(), strict=False)
        src = features(audio[:2])
        sp = pipe.tgt_tok.specials("en")
        dec_in = torch.tensor([[sp.bos, *sp.prompt, 40, 50]] * 2)
        with torch.no_grad():
            gap = (model.eval()(src, torch.full((2,), 3000), dec_in)
                   - reference(input_features=src.transpose(1, 2), decoder_input_ids=dec_in).logits).abs().max()
        assert gap > 1e-2
        return
    sp = pipe.tgt_tok.specials("en")
    src = [features([a])[0] for a in audio]
    opts = pipe.decode_options(beam=3, max_len_b=20)

    def ours(specials):
        pipe.__dict__["specials"] = specials
        monkeypatch.setattr(type(pipe.tgt_tok), "specials", lambda self, lang="": specials)
        return [(h[0].tokens, h[0].score) for h in pipe.search(src, opts)]

    def theirs(**rules):
        with torch.no_grad():
            out = reference.generate(features(audio).transpose(1, 2), language="en", task="transcribe", num_beams=3,
                                     max_new_tokens=20, return_dict_in_generate=True, output_scores=True, **rules)
        prompt = 1 + len(sp.prompt)
        return [([t for t in row[prompt:] if t != sp.eos], float(s))
                for row, s in zip(out.sequences.tolist(), out.sequences_scores)]

    def same(a, b):
        return all(x[0] == y[0] and abs(x[1] - y[1]) < 1e-4 for x, y in zip(a, b))

    if detail == "prompt":
        assert not same(ours(dataclasses.replace(sp, prompt=())), theirs())
        return
    # the rule made to matter: the first token the search puts out without it joins the rule's tokens
    free = ours(dataclasses.replace(sp, **{detail: ()}))
    rule = tuple(getattr(sp, detail)) + (free[0][0][0],)
    key = {"banned_first": "begin_suppress_tokens", "banned": "suppress_tokens"}[detail]
    reference_out = theirs(**{key: list(rule)})
    assert same(ours(dataclasses.replace(sp, **{detail: rule})), reference_out)      # with the rule: equal
    assert not same(free, reference_out)                                              # without: not


def test_export_hf_round_trip_is_bit_equal(folder, reference, tmp_path):
    from safetensors import safe_open

    from t2t.export import export
    out = export(folder, tmp_path / "back", format="hf")
    for path in folder.iterdir():
        if path.name != "model.safetensors":
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    with safe_open(str(out / "model.safetensors"), "pt") as f, safe_open(str(folder / "model.safetensors"), "pt") as g:
        assert set(f.keys()) == set(g.keys())                        # no key bias added
        for k in g.keys():
            assert torch.equal(f.get_tensor(k), g.get_tensor(k)), k


@pytest.fixture
def recordings(tmp_path):
    """A speech manifest of tones at 8 kHz (FSDD's rate), two words to learn."""
    return hf_folders.speech_corpus(tmp_path / "speech")


def speech_recipe(folder, data, out, **train):
    return {"task": "speech", "data": {"dir": str(data), "cache_dir": str(out / "features")},
            "tokenizer": {"target_lang": "en"}, "model": {"pretrained": str(folder)},
            "train": {"max_steps": 4, "validate_every": 4, "valid_max_sentences": 3, "lr": 1e-3,
                      "max_tokens": 20000, **train},
            "decode": {"max_len_b": 8}, "metrics": ["wer"], "output_dir": str(out / "run")}


def test_fine_tuning_from_a_speech_recipe_then_exporting(folder, recordings, tmp_path):
    from t2t.export import export
    from t2t.recipe import load_recipe
    from t2t.trainer import train
    recipe = load_recipe(speech_recipe(folder, recordings, tmp_path, freeze=["encoder"]))
    assert recipe.data.features == "whisper" and recipe.data.sample_rate == 16000 and not recipe.data.cmvn
    before = load(folder, device="cpu").model.state_dict()
    assert train(recipe)["step"] == 4
    tuned = load(tmp_path / "run", device="cpu")
    after = tuned.model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("encoder."))       # frozen
    assert not torch.equal(after["decoder.0.ff.fc1.weight"], before["decoder.0.ff.fc1.weight"])
    text = tuned.generate([str(recordings / "wav" / "0.wav")])[0]
    assert isinstance(text, str)
    out = export(tmp_path / "run", tmp_path / "tuned", format="hf")
    again = transformers.WhisperForConditionalGeneration.from_pretrained(out).eval()
    src = features(hf_folders.tones(2, seed=9))
    sp = tuned.specials                                      # the recipe's language: en
    dec_in = torch.tensor([[sp.bos, *sp.prompt, 40, 50]] * 2)
    with torch.no_grad():
        ours = tuned.model(src, torch.full((2,), 3000), dec_in)
        theirs = again(input_features=src.transpose(1, 2), decoder_input_ids=dec_in).logits
    assert (ours - theirs).abs().max() < 1e-4


def test_lora_on_a_whisper_folder_trains_only_adapters(folder, recordings, tmp_path):
    from t2t.recipe import load_recipe
    from t2t.trainer import train
    recipe = load_recipe(speech_recipe(folder, recordings, tmp_path, lora={"rank": 4, "alpha": 8}))
    assert train(recipe)["step"] == 4
    assert isinstance(load(tmp_path / "run", device="cpu").generate([str(recordings / "wav" / "1.wav")])[0], str)


def test_bad_folders_recipes_and_audio_get_one_message(folder, recordings, tmp_path):
    import shutil

    from t2t.recipe import load_recipe
    from t2t.trainer import train
    broken = tmp_path / "no-preprocessor"
    shutil.copytree(folder, broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(RecipeError, match="preprocessor_config.json"):
        load_recipe(speech_recipe(broken, recordings, tmp_path))
    bad = speech_recipe(folder, recordings, tmp_path)
    bad["data"]["n_mels"] = 40
    with pytest.raises(RecipeError, match="data.n_mels: '40' contradicts the pretrained folder, which sets 80"):
        load_recipe(bad)
    for key, value in (("cmvn", True), ("vtlp", [0.9, 1.1]), ("hop_ms", 20.0), ("features", "fbank")):
        bad = speech_recipe(folder, recordings, tmp_path)
        bad["data"][key] = value
        with pytest.raises(RecipeError, match=f"data.{key}: .* contradicts the pretrained folder"):
            load_recipe(bad)
    bad = {**speech_recipe(folder, recordings, tmp_path), "task": "translation", "data": {"source": "de"}}
    with pytest.raises(RecipeError, match="reads speech; set task: speech"):
        load_recipe(bad)
    pipe = load(folder, device="cpu")
    long = hf_folders.write_wav(tmp_path / "long.wav", np.zeros(8000 * 31), 8000)
    with pytest.raises(T2TError, match="long.wav: 31.0 s of audio; Whisper's front end takes at most 30 s"):
        pipe.generate([str(long)], target_lang="en")
    untold = speech_recipe(folder, recordings, tmp_path)
    del untold["tokenizer"]                                     # training targets need their language
    with pytest.raises(T2TError, match="speech's language is needed to train"):
        train(load_recipe(untold))
    with pytest.raises(T2TError, match="unknown language 'xx'"):
        pipe.generate([str(recordings / "wav" / "0.wav")], target_lang="xx")


def test_the_cli_transcribes_with_a_folder(folder, reference, recordings, tmp_path, capsys):
    from t2t.cli import main
    from t2t_plugins.speech.features import read_wav, resample
    wavs = [recordings / "wav" / f"{i}.wav" for i in range(3)]
    (tmp_path / "in.txt").write_text("\n".join(map(str, wavs)) + "\n")
    assert main(["generate", "--checkpoint", str(folder), "--input", str(tmp_path / "in.txt"), "--beam", "2",
                 "--target-lang", "de", "--max-len-b", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    audio = [resample(*read_wav(w), 16000).numpy() for w in wavs]
    with torch.no_grad():
        ref = reference.generate(features(audio).transpose(1, 2), language="de", task="transcribe", num_beams=2,
                                 max_new_tokens=10)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert lines == [tok.decode(r, skip_special_tokens=True) for r in ref.tolist()]
    json.dumps(lines)


def test_exported_to_ctranslate2_transcribes_as_t2t(folder, tmp_path):
    """CTranslate2's Whisper model from `t2t export --format ctranslate2`: greedy outputs equal
    t2t's (its beam search keeps rules of its own, so beam outputs are not compared)."""
    ctranslate2 = pytest.importorskip("ctranslate2", reason="the export extra is not installed")
    from t2t.export import export
    out = export(folder, tmp_path / "ct2", format="ctranslate2")
    assert (out / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    decoding = json.loads((out / "decoding.json").read_text())
    assert decoding["prompt_tokens"] == ["<|startoftranscript|>"] and decoding["notes"]   # no language in the recipe
    pipe = load(folder, device="cpu")
    sp = pipe.tgt_tok.specials("en")
    audio = hf_folders.tones(6, seed=1)
    src = features(audio)
    model = ctranslate2.models.Whisper(str(out), device="cpu")
    limit = decoding["generate"]["max_length"]                    # twice t2t's: CTranslate2 puts out half
    got = model.generate(ctranslate2.StorageView.from_array(src.transpose(1, 2).contiguous().numpy()),
                         [[sp.bos, *sp.prompt]] * len(audio), beam_size=1, max_length=limit)
    hyps = pipe.search(list(src), pipe.decode_options(beam=1, target_lang="en"))
    lengths = {len(h[0].tokens) for h in hyps}
    assert [g.sequences_ids[0] for g in got] == [h[0].tokens for h in hyps] and len(lengths) >= 2, lengths


def test_the_whisper_recipe_runs_on_a_slice(folder, shared_data, registry, tmp_path):
    """recipes/speech_digits_whisper.yaml end to end on a slice of FSDD, the tiny folder standing in
    for whisper-tiny (the scores mean nothing: random weights)."""
    from pathlib import Path

    from t2t.testing import tiny_run
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "speech_digits_whisper.yaml"
    result = tiny_run(recipe, tmp_path, [f"model.pretrained={folder}", "data.train_limit=16", "data.eval_limit=4",
                                         f"data.cache_dir={tmp_path / 'features'}"],
                      steps=2, data_dir=shared_data, registry=registry, eval_limit=4)
    assert result["recipe"].data.features == "whisper" and set(result["report"]["metrics"]) == {"wer", "cer",
                                                                                                "exact_match"}


def test_batches_count_every_recording_as_30_s(folder):
    """The cache holds trimmed frames, the model computes over 3000: batches are counted in those."""
    from t2t.data import batch_indices
    model = load(folder, device="cpu").model
    lengths = np.array([[120, 5], [80, 4], [3000, 6]])
    assert model.batch_lengths(lengths)[:, 0].tolist() == [3000, 3000, 3000]
    assert [len(b) for b in batch_indices(model.batch_lengths(lengths), 6000)] == [2, 1]
