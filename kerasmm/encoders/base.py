"""The base class every registered encoder derives from."""

import keras

_DTYPE_KINDS = {"float": ("float16", "bfloat16", "float32", "float64"),
                "int": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")}


def check_positive_int(owner, name, value, allow_none=False):
    """`value` if it is a positive int (or None when allowed), else a ValueError naming `owner`."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")
    return value


def check_dropout(owner, value):
    """`value` as a float if it is a rate in [0, 1), else a ValueError naming `owner`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: dropout must be a float in [0, 1), got {value!r}.")
    return float(value)


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
        if not isinstance(output_dim, int) or output_dim <= 0:
            raise ValueError(f"{type(self).__name__}: output_dim must be a positive int, got {output_dim!r}.")
        self.output_dim = output_dim

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
