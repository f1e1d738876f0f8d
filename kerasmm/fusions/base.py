"""The base class every registered fusion derives from."""

import keras
from keras import ops

from kerasmm import validation
from kerasmm.layers.modality_dropout import drop_modalities, presence_matrix

MASK_SUFFIX = "_mask"
PADDING_SUFFIX = "_padding_mask"


class Fusion(keras.layers.Layer):
    """Combines per-modality features into one tensor.

    Called on a dict: each modality name maps to its features (`[B,D]` pooled
    vectors, or `[B,T,D]` sequences when `input_kind == "sequence"`), and the
    optional keys `"<modality>_mask"` (`[B]` or `[B,1]`, 1.0 = present,
    0.0 = absent) and `"<modality>_padding_mask"` (`[B,T]`, sequences only)
    describe presence. Absent modalities are left out of the result and the
    remaining ones renormalised; a missing mask means "always present".

    `call(inputs, training=None, return_weights=False)` returns the fused
    `[B, output_dim]` tensor, or `(fused, weights)` where `weights` maps each
    modality to its per-example contribution `[B]` (summing to 1 over the
    present modalities).

    Args:
        modalities: optional list of modality names the fusion combines. When
            given, the model is checked at build time to provide each one.
        modality_dropout: float in [0, 1). While training, each present
            modality of each example is dropped with this probability; an
            example always keeps at least one modality.
        seed: int, seed of the modality-dropout generator.
    """

    input_kind = "pooled"

    def __init__(self, modalities=None, modality_dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if modalities is not None:
            modalities = [str(m) for m in modalities]
            if len(set(modalities)) != len(modalities) or not modalities:
                raise ValueError(f"{type(self).__name__}: modalities must be distinct names, got {modalities!r}.")
        if not 0.0 <= float(modality_dropout) < 1.0:
            raise ValueError(
                f"{type(self).__name__}: modality_dropout must be in [0, 1), got {modality_dropout!r}."
            )
        self.modalities = modalities
        self.modality_dropout = float(modality_dropout)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed) if modality_dropout else None

    # --- helpers for subclasses -------------------------------------------

    def split_inputs(self, inputs):
        """`(features, masks, padding_masks)` dicts, in a fixed modality order."""
        if not isinstance(inputs, dict):
            raise ValueError(
                f"{type(self).__name__} expects a dict of modality tensors, got {type(inputs).__name__}."
            )
        names = [
            k for k in inputs
            if not k.endswith(MASK_SUFFIX)
        ]
        names = self.select_modalities(names)
        features = {m: inputs[m] for m in names}
        masks = {m: inputs.get(m + MASK_SUFFIX) for m in names}
        padding = {m: inputs.get(m + PADDING_SUFFIX) for m in names}
        return features, masks, padding

    def select_modalities(self, available):
        """The modalities this fusion combines, checked against `available`."""
        available = sorted(available)
        if self.modalities is None:
            chosen = available
        else:
            missing = [m for m in self.modalities if m not in available]
            if missing:
                raise ValueError(
                    f"{type(self).__name__} was configured for modalities {self.modalities}, but the "
                    f"model has no input for {missing}. Available modalities: {available}."
                )
            chosen = list(self.modalities)
        if not chosen:
            raise ValueError(f"{type(self).__name__} received no modality features.")
        return chosen

    def presence(self, features, masks, training=None):
        """`[B, M]` float presence matrix (columns in `features` order), after modality dropout."""
        batch = ops.shape(next(iter(features.values())))[0]
        present = presence_matrix([masks.get(m) for m in features], batch=batch, dtype=self.compute_dtype)
        return drop_modalities(present, self.modality_dropout, self._seed_generator, training=training)

    @staticmethod
    def normalized(present):
        """Equal contributions over the present modalities, `[B, M]`."""
        return present / ops.maximum(ops.sum(present, axis=1, keepdims=True), 1.0)

    @staticmethod
    def check_same_width(cls_name, features):
        """`features` maps modality → tensor or shape."""
        widths = {m: tuple(getattr(x, "shape", x))[-1] for m, x in features.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(
                f"{cls_name} combines modalities element-wise, so they need the same width, got "
                f"{widths}. Give the encoders the same output_dim or set projection_dim on the fusion."
            )

    # --- public API --------------------------------------------------------

    def call(self, inputs, training=None, return_weights=False):
        features, masks, padding = self.split_inputs(inputs)
        built_for = getattr(self, "_fused_modalities", None)
        if built_for is not None and list(features) != built_for:
            raise ValueError(
                f"{type(self).__name__} was built for modalities {built_for} but was called with "
                f"{list(features)}; call it on the same modalities every time."
            )
        present = self.presence(features, masks, training=training)
        fused, weights = self.fuse(features, present, padding, training=training)
        if return_weights:
            return fused, {m: weights[:, i] for i, m in enumerate(features)}
        return fused

    def fuse(self, features, present, padding_masks, training=None):
        """Subclasses: return `(fused [B, D_out], weights [B, M])`."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            {"modalities": self.modalities, "modality_dropout": self.modality_dropout, "seed": self.seed}
        )
        return config


class ProjectedFusion(Fusion):
    """A fusion whose inputs may first pass a per-modality `Dense(projection_dim)`.

    Subclasses that combine features element-wise set `same_width = True`:
    without a projection their modalities must then share one width.

    Args:
        projection_dim: optional positive int, the width of the projections.
    """

    same_width = False

    def __init__(self, projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = validation.positive_int(
            f"{type(self).__name__}: projection_dim", projection_dim, allow_none=True)

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        self.projections = []
        if self.projection_dim is None:
            if self.same_width:
                self.check_same_width(type(self).__name__, features)
            return
        for m, shape in features.items():
            dense = keras.layers.Dense(self.projection_dim, name=f"{m}_projection", dtype=self.dtype_policy)
            dense.build(tuple(shape))
            self.projections.append(dense)

    def projected(self, features):
        """The features as a list in modality order, projected when `projection_dim` is set."""
        if not self.projections:
            return list(features.values())
        return [projection(x) for projection, x in zip(self.projections, features.values())]

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim})
        return config
