"""Audio encoders: float32 waveforms `[B, S]` to sequence + pooled features.

Registered names: `"log_mel"`.
"""

import keras
import keras_hub
import tensorflow as tf
from keras import ops

from kerasmm import validation
from kerasmm.encoders import register
from kerasmm.encoders.base import Encoder

BACKENDS = ("conv", "transformer")


@register("log_mel")
class LogMelAudioEncoder(Encoder):
    """Waveform → log-mel spectrogram (inside the model) → conv or Transformer encoder.

    The spectrogram is computed with `tf.signal` ops only (STFT with a Hann
    window, power spectrum, a fixed mel filter bank, `log(x + log_epsilon)`),
    so it runs in eager mode, in `tf.function` / `tf.data` graphs and in
    exported SavedModels. The mel filter bank is a constant computed once at
    construction; it is not a weight. `log_mel(waveform)` exposes that step.

    Frames: `1 + (S - frame_length) // frame_step` for `S` samples (no end
    padding; `S` must be at least `frame_length`).

    Backends:
    - `"conv"`: `num_layers` `Conv1D(output_dim, 3, strides=2, "same", gelu)`
      over frames (each halving the frame count, rounding up), then a
      `LayerNormalization`.
    - `"transformer"`: `Dense(output_dim)` per frame + keras-hub
      `PositionEmbedding(max_frames)`, `num_layers` pre-norm keras-hub
      `TransformerEncoder` blocks, and a final `LayerNormalization`.

    `pooled` is the mean over output frames; `sequence_mask` is all True.

    Args:
        output_dim: int. D, the output width.
        sample_rate: int. Samples per second of the waveform.
        frame_length: int. STFT window length in samples.
        frame_step: int. Hop between frames in samples.
        fft_length: int. FFT size (>= frame_length); `fft_length // 2 + 1` bins.
        num_mel_bins: int. Number of mel bands.
        lower_edge_hertz: float. Lowest mel band edge.
        upper_edge_hertz: float or None. Highest mel band edge, at most the
            Nyquist frequency `sample_rate / 2` (None means Nyquist).
        backend: "conv" or "transformer".
        num_layers: int. Conv layers or Transformer blocks.
        num_heads: int. Attention heads (transformer); must divide `output_dim`.
        max_frames: int or None. Largest number of frames accepted; required
            by the transformer backend (size of its position table).
        dropout: float in [0, 1).
        log_epsilon: float > 0. Added to the mel power before the log.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.audio import LogMelAudioEncoder
    encoder = LogMelAudioEncoder(output_dim=32)
    out = encoder(np.random.randn(2, 16000).astype("float32"))  # 1 s at 16 kHz
    out["sequence"].shape  # (2, 25, 32): 98 frames, halved twice
    encoder.log_mel(np.zeros((2, 16000), "float32")).shape  # (2, 98, 40)
    ```
    """

    modality = "audio"
    input_rank = 2
    input_kind = "float"
    input_description = "float waveforms [batch, samples]"

    def __init__(
        self,
        output_dim,
        sample_rate=16000,
        frame_length=400,
        frame_step=160,
        fft_length=512,
        num_mel_bins=40,
        lower_edge_hertz=20.0,
        upper_edge_hertz=None,
        backend="conv",
        num_layers=2,
        num_heads=4,
        max_frames=None,
        dropout=0.1,
        log_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(output_dim=output_dim, **kwargs)
        owner = type(self).__name__
        if backend not in BACKENDS:
            raise ValueError(f"{owner}: backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}.")
        for arg, value in (("sample_rate", sample_rate), ("frame_length", frame_length), ("frame_step", frame_step),
                           ("fft_length", fft_length), ("num_mel_bins", num_mel_bins), ("num_layers", num_layers)):
            validation.positive_int(f"{owner}: {arg}", value)
        validation.positive_int(f"{owner}: max_frames", max_frames, allow_none=True)
        if fft_length < frame_length:
            raise ValueError(f"{owner}: fft_length ({fft_length}) must be >= frame_length ({frame_length}).")
        nyquist = sample_rate / 2.0
        lower = validation.non_negative_number(f"{owner}: lower_edge_hertz", lower_edge_hertz)
        upper = nyquist if upper_edge_hertz is None else validation.positive_number(
            f"{owner}: upper_edge_hertz", upper_edge_hertz)
        if upper > nyquist:
            raise ValueError(
                f"{owner}: upper_edge_hertz ({upper}) is above the Nyquist frequency "
                f"sample_rate / 2 = {nyquist}."
            )
        if not 0.0 <= lower < upper:
            raise ValueError(
                f"{owner}: need 0 <= lower_edge_hertz < upper_edge_hertz; got {lower} and {upper}."
            )
        if backend == "transformer":
            validation.positive_int(f"{owner}: num_heads", num_heads)
            if output_dim % num_heads:
                raise ValueError(f"{owner}: output_dim ({output_dim}) must be divisible by num_heads ({num_heads}).")
            if max_frames is None:
                raise ValueError(
                    f"{owner}: backend='transformer' needs max_frames (its position table size); "
                    f"S samples give 1 + (S - {frame_length}) // {frame_step} frames."
                )
        validation.rate(f"{owner}: dropout", dropout)
        validation.positive_number(f"{owner}: log_epsilon", log_epsilon)

        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.fft_length = fft_length
        self.num_mel_bins = num_mel_bins
        self.lower_edge_hertz = lower
        self.upper_edge_hertz = upper_edge_hertz if upper_edge_hertz is None else upper
        self.backend = backend
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.max_frames = max_frames
        self.dropout = float(dropout)
        self.log_epsilon = float(log_epsilon)

        # The mel filter bank, [fft_length // 2 + 1, num_mel_bins]: a constant
        # computed once, eagerly even when constructed inside a graph.
        with tf.init_scope():
            self._mel_matrix = tf.signal.linear_to_mel_weight_matrix(
                num_mel_bins=num_mel_bins,
                num_spectrogram_bins=fft_length // 2 + 1,
                sample_rate=sample_rate,
                lower_edge_hertz=lower,
                upper_edge_hertz=upper,
                dtype=tf.float32,
            ).numpy()

        policy = self.dtype_policy
        if backend == "conv":
            self.convs = [
                keras.layers.Conv1D(
                    output_dim, 3, strides=2, padding="same", activation="gelu", dtype=policy, name=f"conv_{i}"
                )
                for i in range(num_layers)
            ]
            self.projection = None
            self.position_embedding = None
            self.blocks = []
        else:
            self.convs = []
            self.projection = keras.layers.Dense(output_dim, dtype=policy, name="projection")
            self.position_embedding = keras_hub.layers.PositionEmbedding(
                sequence_length=max_frames, dtype=policy, name="position_embedding"
            )
            self.blocks = [
                keras_hub.layers.TransformerEncoder(
                    intermediate_dim=4 * output_dim,
                    num_heads=num_heads,
                    dropout=self.dropout,
                    activation="gelu",
                    normalize_first=True,
                    dtype=policy,
                    name=f"block_{i}",
                )
                for i in range(num_layers)
            ]
        self.feature_dropout = keras.layers.Dropout(self.dropout, dtype=policy, name="feature_dropout")
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="final_norm")

    def num_frames(self, num_samples):
        """Spectrogram frames for a waveform of `num_samples` samples (0 if too short)."""
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.frame_step

    def log_mel(self, waveform):
        """Log-mel spectrogram `[B, frames, num_mel_bins]` (float32) of waveforms `[B, S]`."""
        waveform = tf.cast(waveform, tf.float32)
        stft = tf.signal.stft(
            waveform,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
        power = tf.math.square(tf.math.abs(stft))
        mel = tf.einsum("...ft,tm->...fm", power, tf.constant(self._mel_matrix))
        return tf.math.log(mel + self.log_epsilon)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        owner = type(self).__name__
        samples = input_shape[1]
        frames = None
        if samples is not None:
            frames = self.num_frames(samples)
            if frames == 0:
                raise ValueError(
                    f"{owner}: waveforms of {samples} samples are shorter than frame_length "
                    f"({self.frame_length}); no spectrogram frame fits."
                )
            if self.max_frames is not None and frames > self.max_frames:
                raise ValueError(
                    f"{owner}: waveforms of {samples} samples give {frames} frames, more than "
                    f"max_frames={self.max_frames}. Raise max_frames or shorten the audio."
                )
        shape = (input_shape[0], frames, self.num_mel_bins)
        if self.backend == "conv":
            for conv in self.convs:
                conv.build(shape)
                shape = tuple(conv.compute_output_shape(shape))
        else:
            self.projection.build(shape)
            shape = shape[:2] + (self.output_dim,)
            self.position_embedding.build(shape)
            for block in self.blocks:
                block.build(shape)
        self.final_norm.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = ops.cast(self.log_mel(inputs), self.compute_dtype)
        if self.backend == "conv":
            for conv in self.convs:
                x = self.feature_dropout(conv(x), training=training)
        else:
            x = self.projection(x)
            x = x + self.position_embedding(x)
            x = self.feature_dropout(x, training=training)
            for block in self.blocks:
                x = block(x, training=training)
        x = self.final_norm(x)
        return {
            "sequence": x,
            "pooled": ops.mean(x, axis=1),
            "sequence_mask": ops.ones_like(x[..., 0], dtype="bool"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "fft_length": self.fft_length,
                "num_mel_bins": self.num_mel_bins,
                "lower_edge_hertz": self.lower_edge_hertz,
                "upper_edge_hertz": self.upper_edge_hertz,
                "backend": self.backend,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "max_frames": self.max_frames,
                "dropout": self.dropout,
                "log_epsilon": self.log_epsilon,
            }
        )
        return config
