"""The tf.data pipeline every file reader shares: records → decoded, batched `(features, targets)`.

A reader lists its records in Python (checking each, under the bad-record
policy), as columns: `"image"` / `"audio"` file paths, `"text"` strings or
`"captions"` (a list per record, one sampled per epoch, or all of them as the
target with `all_captions`), `"label"` ints.
`build` turns the columns into a dataset: shard per worker, shuffle, read and
decode in parallel (images to uint8 RGB of one size, audio to mono float at
one rate and length), optional cache, training-only augmentation, batch,
prefetch. Only TensorFlow ops run inside it (no `py_function`), so its
iterator can be saved in a `tf.train.Checkpoint`.

Example:
```python
from kerasmm.data import pipeline
ds = pipeline.build({"text": ["a red circle", "a blue square"], "label": [0, 1]},
                    target="label", batch_size=2)
```
"""

import tensorflow as tf

from kerasmm import validation
from kerasmm.data import audio_ops, image_ops

AUTOTUNE = tf.data.AUTOTUNE
TARGETS = ("label", "text")


def build(
    columns,
    target,
    batch_size=32,
    image_size=224,
    aspect_policy="crop",
    audio_rate=16000,
    audio_length=16000,
    shuffle=False,
    seed=None,
    cache=False,
    deterministic=True,
    augment=False,
    drop_remainder=False,
    input_context=None,
    all_captions=False,
):
    """A batched dataset of `(features, targets)` from record columns.

    Args:
        columns: dict of equal-length lists (see the module docstring).
        target: "label" (int targets; text stays a feature) or "text"
            (caption targets; features are the other modalities).
        batch_size: global batch size; with `input_context` each worker
            batches `input_context.get_per_replica_batch_size(batch_size)`.
        image_size: int or (height, width) every image is resized to.
        aspect_policy: "crop" (default: the centred crop every zoo model's
            preprocessor and exported SavedModel take), "stretch" or "pad"
            (see `image_ops.resize_image`).
        audio_rate, audio_length: waveforms are resampled to `audio_rate` Hz
            and padded or cut to `audio_length` samples.
        shuffle: reshuffle the records every epoch (seeded by `seed`).
        seed: int seed of shuffling, caption sampling and augmentation.
        cache: False, True (in memory) or a file path: cache decoded examples.
        deterministic: keep element order under parallel decoding.
        augment: random flip, crop and colour jitter on images (training only).
        drop_remainder: drop a last, smaller batch.
        input_context: a `tf.distribute.InputContext`; each input pipeline
            then reads its own shard of the records.
        all_captions: with target "text" and `"captions"` records, the
            target is every caption of the record (its references, for
            scoring a captioner as COCO does), a tf.string vector padded
            with "" to the most captions any record has: `[B, R]` batches.
    """
    validation.one_of("target", target, TARGETS)
    if target == "label" and "label" not in columns:
        raise ValueError("target='label' needs labelled records; these records have no labels.")
    if target == "text" and not ({"text", "captions"} & set(columns)):
        raise ValueError("target='text' needs captions; these records have none.")
    if all_captions and (target != "text" or "captions" not in columns):
        raise ValueError("all_captions needs target='text' and records with several captions ('captions').")
    batch_size = validation.positive_int("batch_size", batch_size)
    num_records = len(next(iter(columns.values())))
    if num_records == 0:
        raise ValueError("No usable records: nothing to read.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if aspect_policy not in image_ops.ASPECT_POLICIES:
        raise ValueError(
            f"Unknown aspect policy {aspect_policy!r}; valid policies: {', '.join(image_ops.ASPECT_POLICIES)}."
        )

    slices = dict(columns)
    most_captions = max(len(c) for c in columns["captions"]) if all_captions else 0
    if "captions" in slices:
        slices["captions"] = tf.ragged.constant(slices["captions"], dtype=tf.string)
    ds = tf.data.Dataset.from_tensor_slices(slices)
    # A random stream zipped alongside: seeds for caption sampling and
    # augmentation that live in the dataset (checkpointable), fresh each epoch.
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, randoms)
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if shuffle and not cache:
        ds = ds.shuffle(num_records, seed=seed, reshuffle_each_iteration=True)

    def load(record, random):
        features = {}
        if "image" in record:
            features["image"] = image_ops.load_image(tf.io.read_file(record["image"]), size, aspect_policy)
        if "audio" in record:
            features["audio"] = audio_ops.decode_wav(tf.io.read_file(record["audio"]), audio_rate, audio_length)
        if all_captions:
            captions = record["captions"]
            features["text"] = tf.pad(captions, [[0, most_captions - tf.size(captions)]], constant_values="")
            features["text"] = tf.ensure_shape(features["text"], [most_captions])
        elif "captions" in record:
            captions = record["captions"]
            pick = tf.math.floormod(random[0], tf.cast(tf.size(captions), tf.int64))
            features["text"] = tf.gather(captions, pick)
        elif "text" in record:
            features["text"] = record["text"]
        if target == "text":
            targets = features.pop("text")
        else:
            targets = tf.cast(record["label"], tf.int32)
        return features, targets, random[1]

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
        if shuffle:
            ds = ds.shuffle(min(num_records, 10_000), seed=seed, reshuffle_each_iteration=True)
    if augment and "image" in columns:
        ds = ds.map(_augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.map(lambda features, targets, _: (features, targets))
    return finish(ds, batch_size, drop_remainder=drop_remainder, deterministic=deterministic)


def undecodable_images(paths, image_size=224, aspect_policy="crop"):
    """`{index: reason}` for the image files of `paths` that the pipeline would fail to load.

    Decodes and resizes every file as `build` does, in parallel, once: what
    passes here trains without an error, so a reader in skip mode runs this
    and drops what it finds (damage past a header, such as a PNG's corrupt
    image data, shows only when decoding) instead of failing mid-epoch.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    table = tf.constant(list(paths))
    indices = tf.data.Dataset.range(len(paths))
    loaded = indices.map(
        lambda i: (i, tf.shape(image_ops.load_image(tf.io.read_file(table[i]), size, aspect_policy))[0]),
        num_parallel_calls=AUTOTUNE, deterministic=False,
    ).ignore_errors()
    good = {int(i) for i, _ in loaded.as_numpy_iterator()}
    return {i: "cannot be decoded (damaged image data)" for i in range(len(paths)) if i not in good}


def finish(ds, batch_size, drop_remainder=False, deterministic=True, padded=False):
    """Batch decoded `(features, targets)` examples and prefetch, as every reader does.

    `padded`: pad examples' variable-length tensors (a vector of references) to the batch's longest.
    """
    if padded:
        ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = deterministic
    # One thread per element op: parallelism comes from the parallel map, and
    # multi-threaded ops inside it would fight the train step for the cores.
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(AUTOTUNE)


def _augment(features, targets, random):
    seed = tf.stack([random, random // 7 + 1])
    features = dict(features)
    features["image"] = image_ops.augment_image(features["image"], seed)
    return features, targets, random
