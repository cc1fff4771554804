"""decode.precision int8: the linear layers quantized with torch's dynamic quantization, on CPU."""

import pytest
import sacrebleu
import torch

from t2t.errors import T2TError
from t2t.pipeline import load


def test_int8_outputs_stay_close_to_fp32(toy_transformer):
    run, examples = toy_transformer
    pipe = load(run, device="cpu")
    sources, refs = [e.source for e in examples], [e.target for e in examples]
    weights = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    for beam in (1, 5):
        fp32 = pipe.generate(sources, beam=beam, precision="fp32")
        int8 = pipe.generate(sources, beam=beam, precision="int8")
        bleu32 = sacrebleu.corpus_bleu(fp32, [refs]).score
        bleu8 = sacrebleu.corpus_bleu(int8, [refs]).score
        assert bleu32 > 80                                   # the toy model has learnt the task
        assert abs(bleu8 - bleu32) <= 1.0, (beam, bleu32, bleu8)
        assert sum(a == b for a, b in zip(fp32, int8)) >= 0.95 * len(sources)
    # the int8 copy is a copy: it is quantized, the model keeps its fp32 weights
    quantized = pipe.decoding_model("int8")
    kinds = {type(m) for m in quantized.modules()}
    assert torch.nn.Linear not in kinds and torch.ao.nn.quantized.dynamic.Linear in kinds
    assert torch.ao.nn.quantized.dynamic.Linear not in {type(m) for m in pipe.model.modules()}
    for k, v in pipe.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert pipe.decoding_model("int8") is quantized                         # made once


def test_int8_is_a_cpu_setting(toy_transformer):
    run, _ = toy_transformer
    pipe = load(run, device="cpu")
    pipe.device = torch.device("cuda")          # as a GPU pipeline would be: refused before any work
    with pytest.raises(T2TError, match="int8.*CPU"):
        pipe.decoding_model("int8")
