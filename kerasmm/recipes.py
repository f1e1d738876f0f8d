"""Recipes: a zoo entry with the data and training settings that reached a measured result.

A recipe is a small Python file, `zoo/<name>/recipe.py` in the repository
(installed as package data, `kerasmm/zoo_recipes/<name>/recipe.py`; see
`ZOO_DIR`) or any `.py` path, whose docstring gives the command that runs it and the
result it reached, and which defines:

```python
ENTRY = "captioner"                                  # a kerasmm.zoo entry
MODEL = {}                                           # overrides: kerasmm.zoo.get(ENTRY, **MODEL)
TRAIN = {"epochs": 4, "batch_size": 32}              # see TRAIN_DEFAULTS
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 1500}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 300, "split": "test"}
```

`DATA` and `HELD_OUT` name a reader of `kerasmm.data` (see `READERS`) and
its arguments; the batch size comes from `TRAIN`, the image size and audio
length from the model, and the target (labels or captions) from the entry's
task. `tiny_<name>` is recipe `<name>` on the entry's tiny twin, with the
architecture overrides dropped and `TINY` settings (a few examples, one
epoch): for tests and smoke runs.

Settings, `KEY=VALUE` (values are Python literals, else strings):

- `epochs`, `batch_size`, `seed`, `save_every`, `steps_per_epoch`: `TRAIN`;
- `precision` (None, "float32", "mixed_float16", "mixed_bfloat16") and
  `jit_compile` (True, False, "auto"): how the model is built (see
  `kerasmm.models.precision`); `strategy` (one of
  `kerasmm.distribute.KINDS`): where `kerasmm train` builds and trains it;
- `validate` (validate on the held-out data every epoch), `val_fraction`
  (hold out that fraction of `DATA`: see `Recipe.dataset`) and `patience`
  (early stopping after that many epochs without a better `val_loss`): `TRAIN`;
- `examples`, `held_out_examples`, `learning_rate`: short for
  `data.num_examples`, `held_out.num_examples` and `model.learning_rate`;
- `model.KEY[.SUBKEY...]`: an architecture override, merged as `kerasmm.zoo.get`
  merges (`model.hidden_dim=64`, `model.encoders.text=None`);
- `data.KEY`, `held_out.KEY`: an argument of the reader (`data.captions='all'`).

`Recipe.fit_to_data()` fits the model settings to training data other than
shapes (what `kerasmm train --data` records in `recipe.json`) as
`kerasmm.zoo.get(entry, data=...)` does: the data's class names and count
for a label task, a WordPiece vocabulary trained on the data's texts when
the embedded shapes vocabulary would leave words of them unknown, the
text length, and the image size of the reader (`data.image_size`). See `DATA_FITTED`.

Example:
```python
from kerasmm import recipes
recipe = recipes.load("tiny_captioner").with_settings(["epochs=2", "model.hidden_dim=32"])
model, train = recipe.build_model(), recipe.dataset("data", shuffle=True)
```
"""

import ast
import contextlib
import copy
import dataclasses
import glob
import importlib.resources
import inspect
import json
import logging
import os
import runpy

# kerasmm.data and kerasmm.zoo import TensorFlow: reached as `kerasmm.data` / `kerasmm.zoo` at first use, so
# `kerasmm train --help` (which reads this module's settings) answers without loading them (see kerasmm/__init__).
import kerasmm


def _zoo_dir():
    """The folder of the recipes (`<name>/recipe.py` and `<name>/README.md`).

    Installed from a wheel: the package's `zoo_recipes/` (setup.py ships the
    repository's top-level `zoo/` as `kerasmm.zoo_recipes`). From a source
    checkout or an editable install: the `zoo/` folder beside the package.
    """
    shipped = importlib.resources.files("kerasmm") / "zoo_recipes"
    if isinstance(shipped, os.PathLike) and shipped.is_dir():
        return os.fspath(shipped)
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")


ZOO_DIR = _zoo_dir()
RECIPE_FILE = "recipe.py"
TRAIN_DEFAULTS = {"epochs": 1, "batch_size": 32, "seed": 0, "save_every": 100, "steps_per_epoch": None,
                  "precision": None, "jit_compile": "auto", "strategy": "auto", "validate": False,
                  "val_fraction": None, "patience": None}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # kerasmm.models.precision.PRECISIONS
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")  # kerasmm.distribute.KINDS
# Training examples a `val_fraction` split shuffles among (decoded: the buffer holds them in memory).
SPLIT_SHUFFLE_BUFFER = 2048
SHORTHANDS = {"examples": ("data", "num_examples"), "held_out_examples": ("held_out", "num_examples"),
              "learning_rate": ("model", "learning_rate")}
SECTIONS = ("model", "data", "held_out")
TINY = {"epochs": 1, "batch_size": 8, "examples": 16, "held_out_examples": 8}
# Reader name → the arguments `--data READER:ARG[:ARG]` gives, in order (optional ones after a "?").
READERS = {
    "shapes": (),
    "coco": ("annotations_json", "image_dir"),
    "folder": ("root",),
    "manifest": ("path",),
    "tfrecord": ("pattern",),
    "tfds": ("name", "?split"),
}
DATA_FORMS = "shapes, coco:ANNOTATIONS.json:IMAGE_DIR, folder:DIR, manifest:FILE.jsonl|.csv, tfrecord:GLOB, " \
             "tfds:NAME[:SPLIT]"
LABEL_TASKS = ("classification", "vqa")
# Reader arguments the recipe sets itself (from TRAIN and the caller), never through data.KEY.
_OWNED = ("batch_size", "shuffle", "reader")
# Model settings `Recipe.fit_to_data` takes from the training data.
DATA_FITTED = ("class_names", "num_classes", "vocabulary", "sequence_length", "image_size")


def names(directory=ZOO_DIR):
    """Sorted names of the recipes in `directory` (folders holding a `recipe.py`)."""
    if not os.path.isdir(directory):
        return []
    return sorted(d for d in os.listdir(directory) if os.path.isfile(os.path.join(directory, d, RECIPE_FILE)))


def load(name_or_path, directory=ZOO_DIR):
    """The `Recipe` of a name (`zoo/<name>/recipe.py`, or `tiny_<name>`) or of a `.py` file path."""
    name_or_path = os.fspath(name_or_path)
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise FileNotFoundError(f"No recipe file {name_or_path}.")
        return Recipe.from_file(name_or_path)
    tiny = name_or_path.startswith(kerasmm.zoo.TINY_PREFIX)
    base = name_or_path[len(kerasmm.zoo.TINY_PREFIX):] if tiny else name_or_path
    path = os.path.join(directory, base, RECIPE_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"Unknown recipe {name_or_path!r}. Recipes: {', '.join(names(directory)) or 'none'} "
                         f"(each also as tiny_<name>; in {directory}), or the path of a recipe .py file.")
    recipe = Recipe.from_file(path)
    return recipe.tiny() if tiny else recipe


def parse_setting(text):
    """`"KEY=VALUE"` → `(key, value)`; VALUE is a Python literal (`3`, `1e-3`, `None`, `[32, 64]`) or a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or " " in key:
        raise ValueError(f"Bad setting {text!r}: give KEY=VALUE, e.g. epochs=3 or model.hidden_dim=64.")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def parse_data(spec):
    """A DATA dict from `--data READER:ARG[:ARG]` (see `DATA_FORMS`); checks that the files are there."""
    reader, _, rest = spec.partition(":")
    if reader not in READERS:
        raise ValueError(f"Bad --data {spec!r}: give one of {DATA_FORMS}.")
    arguments = READERS[reader]
    required = [a for a in arguments if not a.startswith("?")]
    parts = rest.split(":", len(arguments) - 1) if rest and arguments else []
    if len(parts) < len(required) or (rest and not arguments) or not all(parts):
        form = "".join(f"[:{a[1:].upper()}]" if a.startswith("?") else f":{a.upper()}" for a in arguments)
        raise ValueError(f"Bad --data {spec!r}: {reader} takes {reader}{form} (forms: {DATA_FORMS}).")
    spec_dict = {"reader": reader, **{a.lstrip("?"): p for a, p in zip(arguments, parts)}}
    _check_paths(spec_dict)
    return spec_dict


def _check_paths(spec):
    reader = spec["reader"]
    files = {"coco": ("annotations_json",), "manifest": ("path",)}.get(reader, ())
    folders = {"coco": ("image_dir",), "folder": ("root",)}.get(reader, ())
    for key in files:
        if not os.path.isfile(spec[key]):
            raise FileNotFoundError(f"--data {reader}: no file {spec[key]}.")
    for key in folders:
        if not os.path.isdir(spec[key]):
            raise FileNotFoundError(f"--data {reader}: no folder {spec[key]}.")
    if reader == "tfrecord" and not glob.glob(spec["pattern"]):
        raise FileNotFoundError(f"--data tfrecord: no files match {spec['pattern']}.")


def reader_function(reader):
    """The `kerasmm.data` function of a reader name."""
    if reader == "tfds":
        from kerasmm.data.tfds import from_tfds

        return from_tfds
    functions = {"shapes": kerasmm.data.shapes, "coco": kerasmm.data.from_coco, "folder": kerasmm.data.from_folder,
                 "manifest": kerasmm.data.from_manifest, "tfrecord": kerasmm.data.from_tfrecord}
    if reader not in functions:
        raise ValueError(f"Unknown reader {reader!r}; readers: {', '.join(READERS)}.")
    return functions[reader]


def reader_arguments(reader):
    """Sorted keyword arguments a reader takes (`pipeline.build`'s too where it passes them on)."""
    function = reader_function(reader)
    parameters = inspect.signature(function).parameters
    accepted = {n for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        from kerasmm.data import pipeline

        extra = kerasmm.data.shapes_arrays if reader == "shapes" else pipeline.build
        accepted |= set(inspect.signature(extra).parameters) - {"columns"}
    return sorted(accepted)


def _deep_update(base, path, value):
    """`base` with `value` set at the key path `path` (nested dicts made as needed)."""
    out = copy.deepcopy(base)
    node = out
    for key in path[:-1]:
        node[key] = dict(node[key]) if isinstance(node.get(key), dict) else {}
        node = node[key]
    node[path[-1]] = value
    return out


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A zoo entry with its data and training settings; see the module docstring."""

    name: str
    entry: str
    model: dict
    train: dict
    data: dict
    held_out: dict = None
    source: str = None
    doc: str = ""

    @classmethod
    def from_file(cls, path):
        """Run a recipe file and check what it defines."""
        try:
            values = runpy.run_path(path)
        except Exception as error:  # a user's file: report it in one line
            raise ValueError(f"Cannot run the recipe {path}: {type(error).__name__}: {error}") from None
        if not isinstance(values.get("ENTRY"), str):
            raise ValueError(f"{path} defines no ENTRY (the zoo entry name).")
        if not isinstance(values.get("DATA"), dict):
            raise ValueError(f"{path} defines no DATA dict (e.g. {{'reader': 'shapes', 'task': ...}}).")
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) if os.path.basename(path) == RECIPE_FILE \
            else os.path.splitext(os.path.basename(path))[0]
        return cls.from_dict({
            "name": name, "entry": values["ENTRY"], "model": values.get("MODEL", {}),
            "train": values.get("TRAIN") or {}, "data": values["DATA"], "held_out": values.get("HELD_OUT"),
            "source": os.path.abspath(path), "doc": values.get("__doc__") or "",
        })

    @classmethod
    def from_dict(cls, values):
        """A checked recipe from `to_dict`'s output (`train` completed with `TRAIN_DEFAULTS`)."""
        entry = values["entry"]
        if entry not in kerasmm.zoo.list(include_tiny=True):
            raise ValueError(f"Unknown zoo entry {entry!r}; entries: {', '.join(kerasmm.zoo.list())} (and tiny_<name>).")
        train = values.get("train") or {}
        unknown = sorted(set(train) - set(TRAIN_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown TRAIN setting {unknown[0]!r}; valid: {', '.join(TRAIN_DEFAULTS)}.")
        recipe = cls(name=values["name"], entry=entry, model=dict(values.get("model") or {}),
                     train={**TRAIN_DEFAULTS, **train}, data=dict(values["data"]),
                     held_out=dict(values["held_out"]) if values.get("held_out") else None,
                     source=values.get("source"), doc=values.get("doc", ""))
        recipe.check()
        return recipe

    def to_dict(self):
        """The recipe as JSON-ready settings (what `kerasmm train` keeps in `OUT/recipe.json`)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "doc"}
        return json.loads(json.dumps(values))

    @property
    def task(self):
        """The zoo entry's task: classification, vqa, retrieval, captioning or text_to_image."""
        return kerasmm.zoo.entry(self.entry).task

    def model_config(self):
        """The entry's architecture dict with `model` merged in (ValueError on an unknown key)."""
        return kerasmm.zoo.merge_config(kerasmm.zoo.entry(self.entry).config, self.model, self.entry)

    def check(self):
        """ValueError unless the model overrides, training settings and data arguments are valid."""
        self.model_config()
        for key in ("epochs", "batch_size", "save_every"):
            _check_count(key, self.train[key])
        if self.train["steps_per_epoch"] is not None:
            _check_count("steps_per_epoch", self.train["steps_per_epoch"])
        if not isinstance(self.train["seed"], int) or self.train["seed"] < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.train['seed']!r}.")
        self._check_training_options()
        for section in ("data", "held_out"):
            spec = getattr(self, section)
            if spec is None:
                continue
            if spec.get("reader") not in READERS:
                raise ValueError(f"{section}: reader must be one of {', '.join(READERS)}, got {spec.get('reader')!r}.")
            valid = [a for a in reader_arguments(spec["reader"]) if a not in _OWNED]
            for key in spec:
                if key != "reader" and key not in valid:
                    raise ValueError(f"The {spec['reader']} reader has no argument {key!r} ({section}.{key}); "
                                     f"valid: {', '.join(valid)}.")

    def _check_training_options(self):
        train = self.train
        if train["precision"] is not None and train["precision"] not in PRECISIONS:
            raise ValueError(f"Unknown precision {train['precision']!r}; valid: {', '.join(PRECISIONS)}.")
        if train["jit_compile"] not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be True, False or 'auto', got {train['jit_compile']!r}.")
        if train["strategy"] not in STRATEGIES:
            raise ValueError(f"Unknown strategy {train['strategy']!r}; valid: {', '.join(STRATEGIES)}.")
        if not isinstance(train["validate"], bool):
            raise ValueError(f"validate must be True or False, got {train['validate']!r}.")
        fraction = train["val_fraction"]
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
                raise ValueError(f"val_fraction must be a number between 0 and 1 (exclusive), got {fraction!r}.")
        if train["patience"] is not None:
            _check_count("patience", train["patience"])
            if not train["validate"]:
                raise ValueError("patience (early stopping) needs a validation set: give --val-data SPEC or "
                                 "--val-fraction F (or --set validate=True to validate on the recipe's held-out data).")

    def tiny(self):
        """This recipe on the entry's tiny twin: no architecture overrides, `TINY` sizes."""
        sizes = {"data": TINY["examples"], "held_out": TINY["held_out_examples"]}
        shrunk = {section: {**getattr(self, section), "num_examples": n} for section, n in sizes.items()
                  if getattr(self, section) and getattr(self, section)["reader"] == "shapes"}
        train = {**self.train, "epochs": TINY["epochs"], "batch_size": TINY["batch_size"]}
        return dataclasses.replace(self, name=kerasmm.zoo.TINY_PREFIX + self.name, entry=kerasmm.zoo.TINY_PREFIX + self.entry,
                                   model={}, train=train, **shrunk)

    def with_settings(self, settings):
        """A new recipe with `KEY=VALUE` settings applied (see the module docstring); checked."""
        values = {"model": self.model, "train": self.train, "data": self.data, "held_out": self.held_out}
        for text in settings:
            key, value = parse_setting(text)
            if key in TRAIN_DEFAULTS:
                values["train"] = {**values["train"], key: value}
                continue
            section, *path = SHORTHANDS.get(key) or key.split(".")
            if section not in SECTIONS or not path or not all(path):
                raise ValueError(f"Unknown setting {key!r}. Valid: {', '.join(TRAIN_DEFAULTS)}, "
                                 f"{', '.join(SHORTHANDS)}, model.KEY (one of {', '.join(self.model_config())}), "
                                 f"data.KEY and held_out.KEY (reader arguments).")
            if section == "model":
                try:
                    kerasmm.zoo.merge_config(kerasmm.zoo.entry(self.entry).config, {path[0]: None}, self.entry)
                except ValueError as error:
                    raise ValueError(f"Unknown setting {key!r}: {error}") from None
            elif values[section] is None:
                raise ValueError(f"{key}: this recipe has no held-out data; give it with --data.")
            elif len(path) > 1 or path[0] in _OWNED:
                raise ValueError(f"{key}: give reader arguments as {section}.ARGUMENT; batch_size is a TRAIN "
                                 "setting and the reader is chosen with --data.")
            values[section] = _deep_update(values[section], path, value)
        recipe = dataclasses.replace(self, **values)
        recipe.check()
        return recipe

    def with_data(self, spec, section="data"):
        """A new recipe whose `section` ("data" or "held_out") reads `--data` `spec` instead.

        New training data leave the recipe without its held-out data (the
        shapes test split would not measure a model of your data): give held-out
        data of yours after it (`with_data(spec, "held_out")`, `kerasmm train
        --val-data`), or hold out part of the new data (`val_fraction`).
        """
        values = {section: parse_data(spec)}
        if section == "data":
            values["held_out"] = None
        recipe = dataclasses.replace(self, **values)
        recipe.check()
        return recipe

    def fit_to_data(self, previous=None):
        """`(recipe, notes)`: this recipe with the model fitted to its training data, and what changed.

        Shapes data leave it as it is. Otherwise the settings are those of
        `kerasmm.zoo.get(entry, data=...)` (`kerasmm.zoo.data_fit`): a label
        task's classes, a vocabulary trained on the data's texts where the
        shapes vocabulary leaves words of them unknown, and the text length.
        Integer labels without names give the class count only where they
        can be read from the files (a manifest's largest label + 1), else
        `model.num_classes` must be set. Model settings the recipe already
        gives (`--set model.num_classes=N`) are kept and must agree with the
        data. `previous` is the `to_dict()` of an earlier run: where it read
        the same data, its vocabulary is kept rather than trained again.
        `notes` are lines for the user.
        """
        if self.data["reader"] == "shapes":
            return self, []
        from kerasmm.data import fitting

        with _quiet_readers():
            dataset = self._fitting_dataset()
        texts = fitting.texts_in_files(self.data)
        data_fit = kerasmm.zoo.data_fit
        prompted = self.task in data_fit.PROMPTED_TASKS
        facts = data_fit.DataFacts(
            class_names=getattr(dataset, "class_names", None),
            texts=texts if texts is not None else fitting.texts_in_dataset(dataset),
            largest_label=fitting.largest_integer_label(self.data) if self.task in LABEL_TASKS else None,
            image_size=data_fit.image_size_of(dataset),
            prompted_texts=fitting.texts_and_labels(dataset, joined=True)[2] if prompted else ())
        kept = (previous or {}).get("model", {}).get("vocabulary")
        same_data = isinstance(kept, list) and previous.get("entry") == self.entry and previous.get("data") == self.data
        model, notes = data_fit.fit_settings(kerasmm.zoo.entry(self.entry), facts, self.model,
                                             spelling=data_fit.Spelling("model.", "set --set "),
                                             trained_vocabulary=kept if same_data else None)
        recipe = dataclasses.replace(self, model={**self.model, **model})
        recipe.check()
        return recipe, [note[0].upper() + note[1:] for note in notes]

    def _fitting_dataset(self):
        """The training data unshuffled, every caption of an image given (where the reader can)."""
        spec = self.data
        if "captions" in reader_arguments(spec["reader"]):
            spec = {**spec, "captions": "all"}
        return dataclasses.replace(self, data=spec).dataset("data")

    def build_model(self):
        """A new compiled model: `kerasmm.zoo.get(entry, precision=..., jit_compile=..., **model)` (`TRAIN`'s)."""
        try:
            return kerasmm.zoo.get(self.entry, precision=self.train["precision"], jit_compile=self.train["jit_compile"],
                           **self.model)
        except TypeError as error:
            raise ValueError(f"Cannot build {self.entry} with {self.model}: {error}") from None

    def dataset(self, section="data", shuffle=False):
        """The batched dataset of `section` ("data" or "held_out"), sized for the model.

        With `val_fraction` F the data's examples are
        split, in the reader's unshuffled order: example i is held out when
        floor((i + 1) F) > floor(i F), which holds out floor(N F) of N examples,
        evenly spread, the same ones every time. "data" is the rest (shuffled
        among `SPLIT_SHUFFLE_BUFFER` examples after decoding when `shuffle`),
        "held_out" the held-out part (unless the recipe names held-out data:
        `kerasmm eval --data`).
        """
        fraction = self.train.get("val_fraction")
        if fraction and (section == "data" or self.held_out is None):
            return self._split_dataset(fraction, held_out=section == "held_out", shuffle=shuffle)
        return self._reader_dataset(section, shuffle)

    def _split_dataset(self, fraction, held_out, shuffle):
        """Part of `DATA` split by `val_fraction` (see `dataset`)."""
        import tensorflow as tf

        batch_size = self.train["batch_size"]
        single = dataclasses.replace(self, train={**self.train, "batch_size": 1})
        examples = single._reader_dataset("data", shuffle=False)
        count = int(examples.cardinality())
        if count >= 0 and int(count * fraction) == 0:
            raise ValueError(f"val_fraction {fraction} of the data's {count} examples holds out none: give a larger "
                             "fraction or more data.")
        if count >= 0 and int(count * fraction) == count:
            raise ValueError(f"val_fraction {fraction} of the data's {count} examples leaves none to train on.")
        fraction = tf.constant(float(fraction), tf.float64)

        def is_held_out(index, *example):
            index = tf.cast(index, tf.float64)
            return tf.floor((index + 1) * fraction) > tf.floor(index * fraction)

        part = examples.unbatch().enumerate()
        part = part.filter(is_held_out if held_out else lambda *a: tf.logical_not(is_held_out(*a)))
        part = part.map(lambda index, *example: example[0] if len(example) == 1 else example)
        if count >= 0:
            held = int(count * float(fraction))
            part = part.apply(tf.data.experimental.assert_cardinality(held if held_out else count - held))
        if shuffle and not held_out:
            seed = self.data.get("seed") if self.data.get("seed") is not None else self.train["seed"]
            part = part.shuffle(SPLIT_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        part = part.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        for name in ("class_names", "skipped_records"):  # what the readers tell of their data
            if hasattr(examples, name):
                setattr(part, name, getattr(examples, name))
        return part

    def _reader_dataset(self, section, shuffle):
        """The dataset the reader of `section` makes (no `val_fraction` split)."""
        spec = getattr(self, section)
        if spec is None:
            raise ValueError(f"The recipe {self.name} has no {section.replace('_', '-')} data; give it with --data.")
        spec = dict(spec)
        reader = spec.pop("reader")
        accepted = reader_arguments(reader)
        config = self.model_config()
        modalities = set(config.get("encoders") or ())
        defaults = {
            "batch_size": self.train["batch_size"],
            "shuffle": shuffle,
            "image_size": config.get("image_size"),
            "audio_length": config.get("audio_length") if "audio" in modalities else None,
            "with_audio": "audio" in modalities,
            "task": self.task if self.task in kerasmm.data.TASKS else "captioning",
            "target": "label" if self.task in LABEL_TASKS else "text",
        }
        if reader != "shapes":
            defaults.pop("task")
        kwargs = {k: v for k, v in defaults.items() if k in accepted and v is not None}
        kwargs.update(spec)
        return reader_function(reader)(**kwargs)


@contextlib.contextmanager
def _quiet_readers():
    """Reader warnings off: the training pass reads the same data again and reports its skipped records."""
    logger = logging.getLogger("kerasmm.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
