"""train.init_from / init_only: starting a run from another run's weights."""


import pytest
import torch

from t2t.recipe import load_recipe
from t2t.testing import tiny_recipe
from t2t.trainer import train


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
