"""Model architectures behind one interface (`t2t.models.base.Seq2Seq`)."""

from t2t.models.base import ModelSpec, Seq2Seq

__all__ = ["ModelSpec", "Seq2Seq"]
