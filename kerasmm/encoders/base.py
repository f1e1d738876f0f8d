"""The base class every registered encoder derives from."""

import keras

from kerasmm import validation

_DTYPE_KINDS = {"float": ("float16", "bfloat16", "float32", "float64"),
                "int": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")}


class Encoder(keras.layers.Layer):
    """Maps one modality to `{"sequence": [B,T,D], "pooled": [B,D], "sequence_mask": [B,T]}`.

    Subclasses set `modality` ("text", "image" or "audio"), `input_rank`
    (including the batch axis) and `input_kind` ("float" or "int"), and
    implement `call`. Inputs of the wrong rank or dtype are refused when the
    encoder is first called (at model-build time), with a message naming the
    encoder and the expected input, rather than failing inside the graph.

    `sequence_mask` is True at real positions (False at text padding); image
    and audio encoders return all True.

    Args:
        output_dim: int. D, the width of `sequence` and `pooled`.
    """

    modality = None
    input_rank = None
    input_kind = "float"
    input_description = ""

    def __init__(self, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = validation.positive_int(f"{type(self).__name__}: output_dim", output_dim)

    def __call__(self, inputs, *args, **kwargs):
        self._check_input(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def _check_input(self, inputs):
        shape = getattr(inputs, "shape", None)
        dtype = keras.backend.standardize_dtype(getattr(inputs, "dtype", None) or "float32")
        expected = f"{self.input_description} ({self.input_kind} dtype, rank {self.input_rank})"
        if shape is None or len(shape) != self.input_rank:
            raise ValueError(
                f"{type(self).__name__} ({self.modality} encoder) expects {expected}, "
                f"got an input of shape {shape}."
            )
        if dtype not in _DTYPE_KINDS[self.input_kind]:
            raise ValueError(
                f"{type(self).__name__} ({self.modality} encoder) expects {expected}, "
                f"got dtype {dtype}."
            )

    def get_config(self):
        config = super().get_config()
        config.update({"output_dim": self.output_dim})
        return config
