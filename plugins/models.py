"""Built-in architectures: `rnn` (LSTM/GRU with attention) and `transformer`."""

import t2t
from t2t.models.rnn import RNNSeq2Seq
from t2t.models.transformer import Transformer


@t2t.hookimpl
def t2t_register_models(register):
    register(RNNSeq2Seq)
    register(Transformer)
