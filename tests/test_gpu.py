"""GPU paths: CUDA training with bf16 autocast, cached decoding and fused attention. Skipped
without a CUDA device (CI has none)."""

import pytest
import torch

from t2t.models.base import ModelSpec
from t2t.models.transformer import Transformer, TransformerOptions
from t2t.options import DecodeOptions
from t2t.recipe import load_recipe
from t2t.search import generate
from t2t.testing import tiny_recipe
from t2t.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_bf16_training_on_cuda_learns(tmp_path, registry):
    r = load_recipe(tiny_recipe("reverse", "transformer", output_dir=str(tmp_path / "run"),
                                model={"dim": 64, "ff_dim": 128, "heads": 4, "layers": 2, "dropout": 0.0},
                                data={"train_size": 3000, "max_length": 6},
                                train={"device": "cuda", "precision": "bf16", "max_epochs": 12, "max_tokens": 800,
                                       "schedule": "inverse_sqrt", "warmup": 50}))
    summary = train(r)
    assert summary["best"] >= 90.0


def test_cuda_decoding_matches_cpu():
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=64, heads=4, ff_dim=128, layers=2, dropout=0.0), ModelSpec(50, 50)).eval()
    src = torch.randint(4, 50, (6, 9))
    lengths = torch.tensor([9, 8, 7, 5, 4, 3])
    opts = DecodeOptions(beam=4, max_len_a=0.0, max_len_b=12)
    cpu = generate(model, src, lengths, opts)
    gpu = generate(model.cuda(), src.cuda(), lengths.cuda(), opts)
    for a, b in zip(cpu, gpu):
        assert a[0].tokens == b[0].tokens
        assert abs(a[0].score - b[0].score) < 1e-3


def test_fused_attention_matches_the_math_path():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    model = Transformer(TransformerOptions(dim=64, heads=4, ff_dim=128, layers=2, dropout=0.0),
                        ModelSpec(50, 50)).cuda().eval()
    src = torch.randint(4, 50, (4, 16), device="cuda")
    lengths = torch.full((4,), 16, device="cuda")
    tgt = torch.randint(4, 50, (4, 12), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model(src, lengths, tgt)
        with sdpa_kernel(SDPBackend.MATH):
            math_path = model(src, lengths, tgt)
    assert torch.allclose(fused.float(), math_path.float(), atol=5e-2)
