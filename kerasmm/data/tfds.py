"""TensorFlow Datasets: `from_tfds` reads prepared TFDS datasets; `kerasmm_local_coco` builds one from local files.

`from_tfds` maps a prepared TFDS dataset onto kerasmm's batched
`(features, targets)`: `"image"` uint8 `[B, H, W, 3]`, `"text"` tf.string
`[B]`, int32 labels or caption strings as targets. It never downloads: the
dataset must already be prepared in `data_dir`, except `kerasmm_local_coco`,
which it prepares from local files when given `manual_dir`.

`kerasmm_local_coco` (`LocalCocoCaptions`) is a TFDS builder for a COCO
captions folder on disk. Importing this module registers it, so after
`import kerasmm.data.tfds` plain `tfds.load("kerasmm_local_coco", ...)`
works too. The manual dir holds

```
annotations/captions_train.json   -> split "train",      images in train/
annotations/captions_val.json     -> split "validation", images in val/
```

(either file may be missing; a year suffix as in the COCO release also works:
`annotations/captions_train2017.json` with images in `train2017/`). Each
image's `file_name` is relative to its split's image folder (or absolute).
Two configs: `captions` (default: image, captions, image_id) and `labelled`
(also `label`, a ClassLabel from each image's `category_id` named by
`categories[]`).

Bad records met while preparing (an annotation whose image_id has no image,
an empty or non-UTF-8 caption, a missing or broken image file, found by its
header or, for damage past the header, by one decoding pass over the images,
an image without `category_id` in the `labelled` config, or whose `category_id`
or `file_name` is of the wrong type) follow the bad-record policy
of `kerasmm.data.errors` through the builder's `on_error` argument: "raise"
(the default) stops preparing with a `BadRecordError` and leaves nothing
prepared; "skip" drops exactly the bad records, logs a warning with the
count, stores the list in the prepared dataset's metadata
(`builder.info.metadata["skipped_records"]`, which `from_tfds` hangs on the
dataset as `dataset.skipped_records`), and raises if a split has nothing left.

Nothing here reaches the network: builders are made with `try_gcs=False` and
prepared with `DownloadConfig(try_download_gcs=False)`.

Example:
```python
from kerasmm.data.tfds import from_tfds
ds = from_tfds("kerasmm_local_coco", data_dir="/tmp/tfds", manual_dir="/data/my_coco",
               target="text", batch_size=8, image_size=64)
images, captions = next(iter(ds))   # ({"image": uint8 [8, 64, 64, 3]}, tf.string [8])
```
"""

import collections
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from kerasmm.data import errors, image_header, image_ops, pipeline, tfrecord
from kerasmm.data.coco import CAPTION_MODES, load_coco_json
from kerasmm.data.record_table import check_text, resolve_path

LOCAL_COCO = "kerasmm_local_coco"
SUPPORTED_LAYOUTS = (
    "image (Image or uint8 Tensor [H, W, C]) + captions: Sequence(Text), optional label: ClassLabel "
    "(e.g. kerasmm_local_coco)",
    "image + captions: Sequence({'text': Text, ...}) (e.g. coco_captions)",
    "image + label: ClassLabel or integer scalar (image classification, e.g. mnist, cifar10)",
)
_ANNOTATIONS = re.compile(r"captions_(train|val)(\d*)\.json")
_SPLITS = {"train": "train", "val": "validation"}
_SHUFFLE_BUFFER = 10_000

_INSTRUCTIONS = """\
Put a COCO captions folder in the manual dir:
  annotations/captions_train.json  (split "train"; images under train/)
  annotations/captions_val.json    (split "validation"; images under val/)
Either may be missing. A year suffix also works (captions_train2017.json with
images under train2017/). Each json has images[] ({"id": int, "file_name": str,
and for the "labelled" config "category_id": int}), annotations[]
({"image_id", "caption"}) and, optionally, categories[] ({"id", "name"}).
"""


@dataclasses.dataclass(eq=False)
class LocalCocoConfig(tfds.core.BuilderConfig):
    """A `kerasmm_local_coco` config: `labelled=True` adds each image's category as `label`.

    Example:
    ```python
    import kerasmm.data.tfds as ktfds
    builder = ktfds.LocalCocoCaptions(config="labelled", data_dir="/tmp/tfds")
    builder.builder_config.labelled   # True
    ```
    """

    labelled: bool = False


class LocalCocoCaptions(tfds.core.GeneratorBasedBuilder):
    """TFDS builder `kerasmm_local_coco`: a COCO captions folder on disk (the manual dir), prepared offline.

    Features: `image` (the file's own bytes, decoded to RGB), `captions`
    (Sequence of Text, the image's usable captions), `image_id` (int64) and,
    in the `labelled` config, `label` (ClassLabel). See the module docstring
    for the manual-dir layout and the bad-record policy (`on_error`).

    Example:
    ```python
    import tensorflow_datasets as tfds
    import kerasmm.data.tfds  # registers kerasmm_local_coco
    ds = tfds.load("kerasmm_local_coco/labelled", split="train", data_dir="/tmp/tfds",
                   builder_kwargs={"on_error": "skip"},
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                       manual_dir="/data/my_coco", try_download_gcs=False)})
    ```
    """

    name = LOCAL_COCO
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        LocalCocoConfig(name="captions", description="Images with their captions."),
        LocalCocoConfig(name="labelled", labelled=True,
                        description="Images with their captions and a class label from category_id."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    # TFDS 4.9.10 finds a builder's file through `importlib_resources`, which it
    # does not declare as a dependency (tensorflow/datasets#11212); naming the
    # file here lets this builder prepare without it.
    code_path = epath.Path(__file__)

    def __init__(self, *, on_error="raise", **kwargs):
        self.on_error = errors.check_on_error(on_error)
        super().__init__(**kwargs)

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "captions": tfds.features.Sequence(tfds.features.Text()),
            "image_id": np.int64,
        }
        if self.builder_config.labelled:
            features["label"] = tfds.features.ClassLabel()
        return self.dataset_info_from_configs(
            description="A local COCO-captions-layout folder, prepared without network access.",
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        files = annotation_files(manual_dir)
        parsed = {split: load_coco_json(path) for split, (path, _) in files.items()}
        label_of = None
        if self.builder_config.labelled:
            class_names, label_of = _categories(parsed, files)
            self.info.features["label"].names = class_names
        skipped = errors.SkippedRecords(f"{LOCAL_COCO}({manual_dir})")
        generators = {}
        for split, (path, image_dir) in files.items():
            examples = _examples(parsed[split], path, image_dir, label_of, self.on_error, skipped)
            examples = _decodable(examples, path, self.on_error, skipped)
            if not examples:
                detail = f" ({skipped.summary()})" if len(skipped) else ""
                raise ValueError(f"{LOCAL_COCO}: {path} has no usable records{detail}.")
            generators[split] = self._generate_examples(examples)
        skipped.warn()
        self.info.metadata["skipped_records"] = [[source, reason] for source, reason in skipped]
        return generators

    def _generate_examples(self, examples):
        for example in examples:
            yield example["image_id"], example


def annotation_files(manual_dir):
    """`{split: (annotation json, image folder)}` for the caption files in `manual_dir/annotations/`.

    Example:
    ```python
    annotation_files("/data/my_coco")
    # {"train": ("/data/my_coco/annotations/captions_train.json", "/data/my_coco/train")}
    ```
    """
    folder = os.path.join(manual_dir, "annotations")
    found = collections.defaultdict(list)
    if os.path.isdir(folder):
        for entry in sorted(os.listdir(folder)):
            match = _ANNOTATIONS.fullmatch(entry)
            if match:
                stem, year = match.groups()
                found[_SPLITS[stem]].append((os.path.join(folder, entry), os.path.join(manual_dir, stem + year)))
    for split, candidates in found.items():
        if len(candidates) > 1:
            names = ", ".join(os.path.basename(p) for p, _ in candidates)
            raise ValueError(f"{LOCAL_COCO}: several annotation files for split {split!r} ({names}); keep one.")
    if not found:
        raise ValueError(f"{LOCAL_COCO}: no caption annotations in {manual_dir}.\n{_INSTRUCTIONS}")
    return {split: candidates[0] for split, candidates in found.items()}


def _categories(parsed, files):
    """Class names and `category_id -> index`, shared by all splits (as `from_coco` numbers them)."""
    names, used, labelled = {}, set(), False
    for split, data in parsed.items():
        for i, category in enumerate(data.get("categories") or []):
            if isinstance(category, dict) and "id" in category:
                if not _is_id(category["id"]):  # it names every label: an error whatever on_error
                    raise ValueError(f"{LOCAL_COCO}/labelled: {files[split][0]}: categories[{i}] needs an integer "
                                     f"or string 'id', got {category['id']!r:.80}.")
                names[category["id"]] = str(category.get("name", category["id"]))
        found = [image["category_id"] for image in data["images"] if isinstance(image, dict) and "category_id" in image]
        labelled = labelled or bool(found)
        used |= {c for c in found if _is_id(c)}  # an image with another category_id is a bad record (_examples)
    if not labelled:
        paths = ", ".join(path for path, _ in files.values())
        raise ValueError(
            f"{LOCAL_COCO}/labelled: no image in {paths} has a 'category_id'; use the 'captions' config."
        )
    ids = sorted(used | set(names), key=lambda i: (str(type(i)), i))
    class_names = [names.get(i, str(i)) for i in ids]
    duplicates = sorted({n for n in class_names if class_names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{LOCAL_COCO}/labelled: categories share the names {duplicates}; class names must be unique.")
    return class_names, {category: index for index, category in enumerate(ids)}


def _is_id(value):
    """Whether `value` can be an image or category id: an integer or a string (not a list, an object, a bool)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _examples(data, path, image_dir, label_of, on_error, skipped):
    """The usable examples of one annotation file; bad records raise or go to `skipped`."""
    images = {}
    for i, image in enumerate(data["images"]):
        source = f"{path}: images[{i}]"
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            errors.bad_record(on_error, skipped, source, "needs 'id' and 'file_name'")
        elif isinstance(image["id"], bool) or not isinstance(image["id"], int):
            errors.bad_record(on_error, skipped, source, f"image id must be an integer, got {image['id']!r}")
        elif image["id"] in images:
            errors.bad_record(on_error, skipped, source, f"duplicate image id {image['id']}")
        elif not isinstance(image["file_name"], str) or not image["file_name"]:
            errors.bad_record(on_error, skipped, source,
                              f"file_name must be a non-empty string, got {image['file_name']!r:.80}")
        elif label_of is not None and "category_id" not in image:
            errors.bad_record(on_error, skipped, source, "no 'category_id' (the labelled config needs one)")
        elif label_of is not None and not _is_id(image["category_id"]):
            errors.bad_record(on_error, skipped, source,
                              f"category_id must be an integer or a string, got {image['category_id']!r:.80}")
        else:
            images[image["id"]] = image
    captions = collections.defaultdict(list)
    for i, annotation in enumerate(data["annotations"]):
        source = f"{path}: annotation {annotation.get('id', i) if isinstance(annotation, dict) else i}"
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            errors.bad_record(on_error, skipped, source, "needs 'image_id' and 'caption'")
        elif not _is_id(annotation["image_id"]) or annotation["image_id"] not in images:
            errors.bad_record(on_error, skipped, source, f"image_id {annotation['image_id']!r} has no image")
        else:
            caption, reason = check_text(annotation["caption"])
            if reason:
                errors.bad_record(on_error, skipped, source, reason)
            else:
                captions[annotation["image_id"]].append(caption)
    examples = []
    for image_id, texts in captions.items():
        image = images[image_id]
        file = resolve_path(image_dir, image["file_name"])
        reason = image_header.check_image(file)
        if reason:
            errors.bad_record(on_error, skipped, f"{path}: image {image_id}", f"image {file}: {reason}")
            continue
        example = {"image": file, "captions": texts, "image_id": image_id}
        if label_of is not None:
            example["label"] = label_of[image["category_id"]]
        examples.append(example)
    return examples


def _decodable(examples, path, on_error, skipped):
    """`examples` less those whose image does not decode (damage past the header that `check_image` reads).

    One decoding pass over the files, as the file readers run in skip mode:
    what is prepared then decodes when read, instead of failing mid-epoch.
    """
    files = [os.fsencode(example["image"]) for example in examples]
    failed = pipeline.undecodable_images(files, image_size=8) if files else {}
    for i in sorted(failed):
        example = examples[i]
        errors.bad_record(on_error, skipped, f"{path}: image {example['image_id']}",
                          f"image {example['image']}: {failed[i]}")
    return [example for i, example in enumerate(examples) if i not in failed]


def from_tfds(
    name,
    split="train",
    data_dir=None,
    target=None,
    captions="sample",
    batch_size=32,
    image_size=224,
    aspect_policy="crop",
    shuffle=False,
    seed=None,
    deterministic=True,
    drop_remainder=False,
    input_context=None,
    manual_dir=None,
    on_error="raise",
):
    """A batched `(features, targets)` dataset from a prepared TFDS dataset; never downloads.

    Known feature layouts (see `SUPPORTED_LAYOUTS`): image + captions as a
    Sequence of Text (`kerasmm_local_coco`), image + captions as a Sequence of
    `{"text": ...}` (`coco_captions`), and image + label (image
    classification). Images come out uint8 RGB (greyscale repeated, alpha
    over white) resized to `image_size` with `aspect_policy`.

    Args:
        name: a TFDS name, e.g. "kerasmm_local_coco/labelled", "coco_captions", "mnist".
        split: a TFDS split, slicing included ("train[:10%]").
        data_dir: where the prepared data lives (TFDS's default when None).
        target: "text" (caption targets; features are the image), "label"
            (int32 targets; features are the image and, when there are
            captions, "text"). None: "text" when there are captions, else "label".
        captions: "sample" (one example per image, one caption drawn afresh
            each epoch, seeded and checkpoint-safe), "all" (one example per
            image-caption pair) or "references" (one example per image with
            all its captions as the target, a `[B, R]` tf.string batch padded
            with "": for `Captioner.evaluate` against every reference).
        batch_size: global batch size; with `input_context` each worker
            batches `input_context.get_per_replica_batch_size(batch_size)`.
        image_size, aspect_policy: as in `kerasmm.data.pipeline.build`.
        shuffle, seed: reshuffle files and examples every epoch, seeded.
        deterministic: keep element order under parallel decoding.
        drop_remainder: drop a last, smaller batch.
        input_context: a `tf.distribute.InputContext`: each input pipeline
            reads its own files (TFDS sharding) when there are enough files,
            else its own examples (`Dataset.shard`).
        manual_dir: only for `kerasmm_local_coco`: the folder to prepare it
            from when it is not prepared yet in `data_dir` (prepared data is
            reused as it is).
        on_error: bad-record policy. When preparing `kerasmm_local_coco`, as in
            the module docstring. When reading, an example with no captions or
            an empty one fails the iteration with InvalidArgumentError
            ("raise"); with "skip" empty captions are dropped, and examples
            left with none. With "skip" the split's TFRecord files are also
            read once before the pipeline is built (TensorFlow's reader checks
            every record's CRC, and each file's record count is checked against
            the dataset's metadata): a damaged, cut short or unreadable file
            then loses only its bad records, listed in `skipped_records` as
            "FILE record N" or "FILE records N-M" (the FILE alone for one that
            cannot be read; "FILE bytes X-Y" for bytes appended after its last
            record, which lose nothing), and its good records are read by
            their byte offsets (decoded as TFDS decodes them). Only CRCs and
            counts are checked: a record TFDS wrote is trusted to parse.
            "raise" leaves such a file to fail the iteration with
            TensorFlow's error (DataLossError, NotFoundError, ...).

    The result carries `class_names` (ClassLabel names, or None) and
    `skipped_records` (records skipped when `kerasmm_local_coco` was prepared,
    then, in skip mode, damaged records of the split's files).

    Example:
    ```python
    ds = from_tfds("kerasmm_local_coco/labelled", data_dir="/tmp/tfds", manual_dir="/data/my_coco",
                   target="label", batch_size=16, image_size=32, shuffle=True, seed=0)
    features, labels = next(iter(ds))   # {"image", "text"}, int32 [16]
    ds.class_names                      # from the json's categories
    ```
    """
    if captions not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}.")
    errors.check_on_error(on_error)
    if target is not None and target not in pipeline.TARGETS:
        raise ValueError(f"target must be one of {pipeline.TARGETS} or None, got {target!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if aspect_policy not in image_ops.ASPECT_POLICIES:
        raise ValueError(
            f"Unknown aspect policy {aspect_policy!r}; valid policies: {', '.join(image_ops.ASPECT_POLICIES)}."
        )
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

    builder = _builder(name, data_dir, on_error)
    layout = _layout(name, builder.info.features)
    if manual_dir is not None:
        _prepare_local(builder, name, manual_dir)
    elif not builder.is_prepared():
        hint = " Pass manual_dir= to prepare it from local files." if isinstance(builder, LocalCocoCaptions) else (
            f" Prepare it first where there is network access (`tfds build {name} --data_dir ...` or "
            f"`tfds.builder({name!r}).download_and_prepare()`)."
        )
        raise ValueError(
            f"from_tfds: {name!r} is not prepared in {builder.data_dir_root}; from_tfds never downloads.{hint}"
        )

    if target is None:
        target = "text" if layout["captions"] else "label"
    if captions == "references" and (target != "text" or not layout["captions"]):
        raise ValueError("from_tfds: captions='references' gives every caption of an image as the target: use "
                         "target='text' on a dataset with captions.")
    if target == "text" and not layout["captions"]:
        raise ValueError(f"from_tfds: target='text' needs captions; {name!r} has none (features: {layout['keys']}).")
    if target == "label" and not layout["label"]:
        raise ValueError(f"from_tfds: target='label' needs labels; {name!r} has none (features: {layout['keys']}).")

    skipped = errors.SkippedRecords(f"from_tfds({name})")
    metadata = builder.info.metadata if isinstance(builder, LocalCocoCaptions) else None
    for source, reason in (metadata or {}).get("skipped_records", []):
        skipped.add(source, reason)
    read_config, shard = _read_config(builder, split, shuffle, seed, input_context)
    decoders = {"image": tfds.decode.SkipDecoding()} if layout["encoded"] else None
    plans = _check_files(builder, split, skipped) if on_error == "skip" else None
    if plans is None:
        ds = builder.as_dataset(split=split, shuffle_files=shuffle, decoders=decoders, read_config=read_config)
    else:
        ds = _read_good_records(builder, plans, decoders, shuffle, seed, read_config.input_context, deterministic)
    if shard:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    ds = ds.map(lambda example: _select(example, layout, on_error), num_parallel_calls=pipeline.AUTOTUNE,
                deterministic=deterministic)
    if layout["captions"] and on_error == "skip":
        ds = ds.filter(lambda example: tf.size(example["captions"]) > 0)
    if layout["captions"] and captions == "all":
        ds = ds.flat_map(_expand)
    if shuffle:
        ds = ds.shuffle(_buffer_size(builder, split, captions == "all"), seed=seed, reshuffle_each_iteration=True)
    # Caption draws come from a random stream zipped alongside (checkpointable, fresh each epoch).
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))

    def load(example, random):
        image = example["image"]
        if layout["encoded"]:
            features = {"image": image_ops.load_image(image, size, aspect_policy)}
        else:
            features = {"image": image_ops.resize_image(image_ops.to_rgb(image), size, aspect_policy)}
        if captions == "references":
            return features, example["captions"]
        if "text" in example:
            features["text"] = example["text"]
        elif "captions" in example:
            pick = tf.math.floormod(random, tf.cast(tf.size(example["captions"]), tf.int64))
            features["text"] = tf.gather(example["captions"], pick)
        if target == "text":
            return features, features.pop("text")
        return features, tf.cast(example["label"], tf.int32)

    ds = ds.map(load, num_parallel_calls=pipeline.AUTOTUNE, deterministic=deterministic)
    ds = pipeline.finish(ds, batch_size, drop_remainder=drop_remainder, deterministic=deterministic,
                         padded=captions == "references")
    label_feature = builder.info.features["label"] if layout["label"] else None
    ds.class_names = list(label_feature.names) if isinstance(label_feature, tfds.features.ClassLabel) else None
    return errors.attach(ds, skipped)


def _builder(name, data_dir, on_error):
    """The TFDS builder for `name`, from its code or its prepared files; no network."""
    kwargs = {"on_error": on_error} if _is_local_coco(name) else {}
    where = data_dir or "TFDS's default data dirs"
    try:
        return tfds.builder(name, data_dir=data_dir, try_gcs=False, **kwargs)
    except tfds.core.DatasetNotFoundError as e:
        raise ValueError(
            f"from_tfds: unknown dataset {name!r}: no TFDS builder has that name and no prepared copy is in "
            f"{where}. ({str(e).splitlines()[0]})"
        ) from None
    except ValueError:
        raise
    except Exception as e:  # e.g. a damaged dataset_info.json of the prepared copy: a protobuf ParseError
        raise ValueError(
            f"from_tfds: cannot load {name!r} from {where}: {type(e).__name__}: {str(e).splitlines()[0]} "
            "(a prepared copy with damaged metadata files must be prepared again)"
        ) from e


def _is_local_coco(name):
    try:
        return tfds.core.naming.parse_builder_name_kwargs(name)[0].name == LOCAL_COCO
    except Exception:  # a malformed name: tfds.builder reports it
        return False


def _prepare_local(builder, name, manual_dir):
    if not isinstance(builder, LocalCocoCaptions):
        raise ValueError(f"from_tfds: manual_dir is only for {LOCAL_COCO!r}; {name!r} must be prepared beforehand.")
    if builder.is_prepared():
        return
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise ValueError(f"from_tfds: manual_dir {manual_dir!r} is not a folder.\n{_INSTRUCTIONS}")
    annotation_files(manual_dir)  # a clear error before TFDS starts
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder.download_and_prepare(download_config=config)


class _FilePlan:
    """How to read one file instruction of the split: whole (`offsets` None) or its good records' byte spans."""

    def __init__(self, instruction, offsets=None, lengths=None):
        self.filename = os.fspath(instruction.filename)
        self.skip = int(instruction.skip)
        self.take = int(instruction.take)
        self.offsets = offsets
        self.lengths = lengths


def _check_files(builder, split, skipped):
    """Skip mode: read the split's TFRecord files once; None when every one is whole, else a `_FilePlan` each.

    A file whose records all pass TensorFlow's CRC checks and that holds as
    many records as the dataset's metadata says is read as TFDS reads it. In
    a damaged one (a `DataLossError`, or fewer records than the metadata
    counts: cut short or emptied) `tfrecord.scan_records` finds exactly which
    records are bad; its good records are then read by byte offset. A file
    that cannot be read at all (missing, no permission) loses its records.
    The bad records within the split (its slice of each file) go to `skipped`.
    """
    if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
        return None
    try:
        instructions = list(builder.info.splits[split].file_instructions)
    except Exception:  # an unknown split: as_dataset reports it
        return None
    plans, damaged = [], False
    for instruction in instructions:
        plan = _FilePlan(instruction)
        plans.append(plan)
        expected = int(instruction.examples_in_shard)
        first, stop = plan.skip, plan.skip + plan.take
        try:
            count = int(tf.data.TFRecordDataset(plan.filename).reduce(np.int64(0), lambda n, _: n + 1))
            if count >= expected:
                continue
        except tf.errors.DataLossError:
            pass
        except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError) as error:
            skipped.add(plan.filename, f"the file cannot be read ({tfrecord.short_error(error)}); its "
                                       f"{plan.take} examples in split {split!r} are lost")
            plan.offsets, plan.lengths, damaged = [], [], True
            continue
        with tf.io.gfile.GFile(plan.filename, "rb") as f:
            data = f.read()
        good, bad = tfrecord.scan_records(data, expected)
        for index, reason in bad:
            if isinstance(index, int):
                index = range(index, index + 1)
            if isinstance(index, range):  # the records of the split only
                index = range(max(index.start, first), min(index.stop, stop))
                if not index:
                    continue
            skipped.add(tfrecord.record_source(plan.filename, index), reason)
        kept = [(offset, length) for number, offset, length in good if first <= number < stop]
        plan.offsets = [offset for offset, _ in kept]
        plan.lengths = [length for _, length in kept]
        damaged = True
    return plans if damaged else None


def _read_good_records(builder, plans, decoders, shuffle, seed, input_context, deterministic):
    """The split's examples from `_check_files`'s plans: whole files streamed, damaged ones by byte offset.

    Decoded as `builder.as_dataset` decodes them (`features.deserialize_example`).
    With `input_context` (enough files) each pipeline reads its own files.
    """
    names = tf.constant([plan.filename for plan in plans])
    skips = tf.constant([plan.skip for plan in plans], tf.int64)
    # A whole file streams its first skip + take records, less the first skip; a damaged one none (take(0)
    # never opens the file: a damaged or missing one is only read through its good records' byte spans).
    stops = tf.constant([plan.skip + plan.take if plan.offsets is None else 0 for plan in plans], tf.int64)
    offsets = tf.ragged.constant([plan.offsets or [] for plan in plans], tf.int64, ragged_rank=1)
    lengths = tf.ragged.constant([plan.lengths or [] for plan in plans], tf.int64, ragged_rank=1)

    def read(i):
        streamed = tf.data.TFRecordDataset(names[i]).take(stops[i]).skip(skips[i])
        return streamed.concatenate(tfrecord._records_at(names[i], offsets[i], lengths[i]))

    files = tf.data.Dataset.range(len(plans))
    if input_context is not None:
        files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        files = files.shuffle(len(plans), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(read, cycle_length=min(len(plans), 16), block_length=16,
                               num_parallel_calls=pipeline.AUTOTUNE, deterministic=deterministic)
    features = builder.info.features
    return records.map(lambda record: features.deserialize_example(record, decoders=decoders),
                       num_parallel_calls=pipeline.AUTOTUNE, deterministic=deterministic)


def _layout(name, features):
    """Which supported layout `features` has: what to read and how to decode it."""
    keys = sorted(features.keys())

    def unsupported(why):
        layouts = "\n  ".join(SUPPORTED_LAYOUTS)
        return ValueError(
            f"from_tfds: {name!r} has an unsupported feature layout ({why}; features: {keys}). "
            f"Supported layouts:\n  {layouts}"
        )

    if "image" not in features:
        raise unsupported("no 'image' feature")
    image = features["image"]
    if isinstance(image, tfds.features.Image) and image.np_dtype == np.uint8:
        encoded = True
    elif isinstance(image, tfds.features.Tensor) and image.np_dtype == np.uint8 and len(image.shape) == 3:
        encoded = False
    else:
        raise unsupported("'image' is not a uint8 image")
    caption_kind = None
    if "captions" in features and isinstance(features["captions"], tfds.features.Sequence):
        inner = features["captions"].feature
        if isinstance(inner, tfds.features.Text):
            caption_kind = "text"
        elif isinstance(inner, tfds.features.FeaturesDict) and "text" in inner and isinstance(inner["text"], tfds.features.Text):
            caption_kind = "dict"
    label = features["label"] if "label" in features else None
    has_label = isinstance(label, tfds.features.ClassLabel) or (
        isinstance(label, tfds.features.Tensor) and label.shape == () and np.issubdtype(label.np_dtype, np.integer)
    )
    if not caption_kind and not has_label:
        raise unsupported("no 'captions' and no integer 'label'")
    return {"keys": keys, "encoded": encoded, "captions": caption_kind, "label": has_label}


def _read_config(builder, split, shuffle, seed, input_context):
    """TFDS read options, and whether to shard examples (too few files to give each worker its own)."""
    kwargs = {"shuffle_seed": seed} if shuffle else {}
    shard = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        try:
            num_files = len(builder.info.splits[split].file_instructions)
        except Exception:  # unknown split: as_dataset reports it
            num_files = 0
        if num_files >= input_context.num_input_pipelines:
            kwargs["input_context"] = input_context
        else:
            shard = True
    return tfds.ReadConfig(**kwargs), shard


def _select(example, layout, on_error):
    """Keep what kerasmm reads: image, stripped captions (checked per `on_error`), label."""
    selected = {"image": example["image"]}
    if layout["captions"]:
        texts = example["captions"]["text"] if layout["captions"] == "dict" else example["captions"]
        texts = tf.strings.strip(texts)
        usable = tf.strings.length(texts) > 0
        if on_error == "raise":
            check = tf.debugging.Assert(
                tf.logical_and(tf.size(texts) > 0, tf.reduce_all(usable)),
                ["from_tfds: an example has no captions or an empty caption; pass on_error='skip' to drop them.",
                 texts],
            )
            with tf.control_dependencies([check]):
                texts = tf.identity(texts)
        else:
            texts = tf.boolean_mask(texts, usable)
        selected["captions"] = texts
    if layout["label"]:
        selected["label"] = example["label"]
    return selected


def _expand(example):
    """One example per caption: the rest of the example repeated beside each caption."""
    rest = {k: v for k, v in example.items() if k != "captions"}
    texts = tf.data.Dataset.from_tensor_slices(example["captions"])
    pairs = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(rest).repeat(), texts)
    return pairs.map(lambda r, text: {**r, "text": text})


def _buffer_size(builder, split, per_caption):
    """Every example of the split, up to `_SHUFFLE_BUFFER` (pairs outnumber images: the cap)."""
    if per_caption:
        return _SHUFFLE_BUFFER
    try:
        return max(1, min(_SHUFFLE_BUFFER, int(builder.info.splits[split].num_examples)))
    except Exception:  # unknown split: as_dataset reports it
        return _SHUFFLE_BUFFER
