"""Name → class registries for encoders, fusions and zoo entries.

Each registry is filled by explicit `register` calls in the module that
defines the class (no import globbing), and every class registered here is
also registered with Keras under the package `"kerasmm"`, so `.keras` files
load with `safe_mode=True` and no `custom_objects`.
"""

import fnmatch

import keras

KERAS_PACKAGE = "kerasmm"


class Registry:
    """A name → object table with clear errors.

    Example:
    ```python
    layers = Registry("layer")

    @layers.register("double")
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    layers.get("double")  # a new Double()
    layers.list()         # ["double"]
    ```
    """

    def __init__(self, kind, keras_serializable=True):
        self.kind = kind
        self.keras_serializable = keras_serializable
        self._entries = {}

    def register(self, name, obj=None):
        """Register `obj` under `name`; usable as a decorator.

        Registering a name twice raises `ValueError`.
        """

        def add(obj):
            if not isinstance(name, str) or not name:
                raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}.")
            if name in self._entries:
                raise ValueError(
                    f"The {self.kind} name {name!r} is already registered "
                    f"(to {self._entries[name]!r}); choose another name."
                )
            if self.keras_serializable and isinstance(obj, type):
                registered_name = f"{KERAS_PACKAGE}>{obj.__name__}"
                if keras.saving.get_registered_object(registered_name) is None:
                    keras.saving.register_keras_serializable(package=KERAS_PACKAGE)(obj)
            self._entries[name] = obj
            return obj

        return add if obj is None else add(obj)

    def lookup(self, name):
        """The registered object itself (e.g. the class), not an instance."""
        if name not in self._entries:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise ValueError(f"Unknown {self.kind} {name!r}. Valid {self.kind} names: {valid}.")
        return self._entries[name]

    def get(self, name, **config):
        """A new instance of the entry `name`, built with `config`."""
        return self.lookup(name)(**config)

    def list(self, pattern=None):
        """Sorted registered names, optionally filtered by a glob `pattern`."""
        names = sorted(self._entries)
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    def name_of(self, obj_or_cls):
        """The registered name of a class or of an instance of it."""
        cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
        for name, entry in self._entries.items():
            if entry is cls:
                return name
        raise ValueError(f"{cls.__name__} is not a registered {self.kind}.")

    def __contains__(self, name):
        return name in self._entries

    def __repr__(self):
        return f"Registry({self.kind!r}, {self.list()})"


def resolve(registry, spec, **defaults):
    """Turn a layer, a registered name or a `{"name": ..., **config}` dict into an instance.

    `defaults` fill config keys the spec leaves out.
    """
    if isinstance(spec, keras.layers.Layer):
        return spec
    if isinstance(spec, str):
        return registry.get(spec, **defaults)
    if isinstance(spec, dict):
        config = dict(spec)
        if "name" not in config:
            raise ValueError(
                f"A {registry.kind} spec dict needs a 'name' key naming one of: "
                f"{', '.join(registry.list())}. Got {spec!r}."
            )
        name = config.pop("name")
        return registry.get(name, **{**defaults, **config})
    raise ValueError(
        f"A {registry.kind} must be a registered name, a dict with 'name', or a layer; got {spec!r}."
    )
