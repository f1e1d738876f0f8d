import keras
import pytest

import kerasmm
from kerasmm.registry import Registry, resolve


def test_register_get_list():
    registry = Registry("widget")

    @registry.register("double")
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    assert registry.list() == ["double"]
    assert isinstance(registry.get("double"), Double)
    assert keras.saving.get_registered_object("kerasmm>Double") is Double


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown encoder 'nope'.*bow.*cnn"):
        kerasmm.encoders.get("nope")
    with pytest.raises(ValueError, match=r"Unknown fusion 'nope'.*concat.*weighted_sum"):
        kerasmm.fusions.get("nope")
    with pytest.raises(ValueError, match=r"Unknown zoo entry 'nope'.*weighted_sum_classifier"):
        kerasmm.zoo.get("nope")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        kerasmm.encoders.register("cnn", kerasmm.encoders.lookup("bow"))
    with pytest.raises(ValueError, match="already registered"):
        kerasmm.fusions.register("concat", kerasmm.fusions.lookup("product"))
    entry = kerasmm.zoo.entry("weighted_sum_classifier")
    with pytest.raises(ValueError, match="already registered"):
        kerasmm.zoo.register("weighted_sum_classifier", entry.builder, entry.config, entry.task)


def test_resolve_accepts_names_specs_and_layers():
    by_name = resolve(kerasmm.fusions.FUSIONS, "concat")
    by_spec = resolve(kerasmm.fusions.FUSIONS, {"name": "gated", "output_dim": 8})
    assert type(by_name).__name__ == "ConcatFusion"
    assert by_spec.output_dim == 8
    assert resolve(kerasmm.fusions.FUSIONS, by_spec) is by_spec
    with pytest.raises(ValueError, match="needs a 'name' key"):
        resolve(kerasmm.fusions.FUSIONS, {"output_dim": 8})


def test_every_registered_class_is_keras_serializable():
    for registry in (kerasmm.encoders.ENCODERS, kerasmm.fusions.FUSIONS):
        for name in registry.list():
            cls = registry.lookup(name)
            assert keras.saving.get_registered_object(f"kerasmm>{cls.__name__}") is cls, name
