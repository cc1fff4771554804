"""int8 decoding with torch's dynamic quantization (torch.ao.quantization.quantize_dynamic, what
`decode.precision: int8` uses) against torchao's Int8DynamicActivationInt8Weight, eager, side by side
in one process: sentences/s of decode_speed.py's models (each twice, alternating) and how far each
moves the log-probabilities of the fp32 model.

    pip install torchao
    python benchmarks/int8_backends.py SIZE BEAM [THREADS] [SENTENCES]     # e.g. small 5 2 256
"""
import copy
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

import decode_speed as ds  # noqa: E402
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
size, beam = sys.argv[1], int(sys.argv[2])
from t2t.options import DecodeOptions  # noqa: E402
model = ds.t2t_model(size)
opts = DecodeOptions(beam=beam, min_len=ds.OUT_LEN, max_len_a=0.0, max_len_b=ds.OUT_LEN + 1, length_penalty=1.0)
data = ds.sources(int(sys.argv[4]) if len(sys.argv) > 4 else 256)
from t2t.device import int8_copy  # noqa: E402
from t2t.models import base as _b  # noqa: E402
_orig = _b.Seq2Seq.project


def project(self, h):           # torchao's weights are tensor subclasses: the plain output layer
    if isinstance(self.out, torch.nn.Linear) and type(self.out.weight.data) is not torch.Tensor:
        return self.logits(h)
    return _orig(self, h)


_b.Seq2Seq.project = project


def ao(m):
    from torchao.quantization import quantize_, Int8DynamicActivationInt8WeightConfig
    m = copy.deepcopy(m).float().eval()
    quantize_(m, Int8DynamicActivationInt8WeightConfig())
    return m


out = {}
for name, make in (("fp32", lambda m: m), ("torch.ao", int8_copy), ("torchao", ao), ("torch.ao#2", int8_copy), ("torchao#2", ao)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = make(model)
    out[name] = ds.time_t2t(q, opts, None, data)["sentences_per_s"]
    print(name, round(out[name], 1), flush=True)
# agreement of logits on a batch
src = torch.tensor([s[:12] + [0]*(12-len(s[:12])) for s in data[:16]])
lengths = torch.tensor([min(len(s), 12) for s in data[:16]])
tgt = torch.randint(4, ds.VOCAB, (16, 10))
with torch.no_grad():
    ref = model(src, lengths, tgt).log_softmax(-1)
    for name, make in (("torch.ao", int8_copy), ("torchao", ao)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = make(model)
        got = q(src, lengths, tgt).log_softmax(-1)
        print(name, "max |dlogprob|", float((got - ref).abs().max()), "argmax agree", float((got.argmax(-1) == ref.argmax(-1)).float().mean()))
