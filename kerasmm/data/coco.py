"""`from_coco`: the COCO captions layout (images[] + annotations[] with captions)."""

import collections
import json
import os

from kerasmm import validation
from kerasmm.data.record_table import RecordTable, check_text, read_without_bom, resolve_path, same_file_key

CAPTION_MODES = ("sample", "all", "references")


def load_coco_json(path):
    """The parsed annotation file; captions that are not UTF-8 survive as lone surrogates.

    A leading UTF-8 byte-order mark is accepted and dropped.
    """
    if not os.path.isfile(path):
        raise ValueError(f"from_coco: no annotation file {path!r}.")
    text = read_without_bom(path).decode("utf-8", errors="surrogateescape")
    try:
        data = json.loads(text)
    except ValueError as e:  # JSONDecodeError, or an integer of more digits than Python converts
        raise ValueError(f"from_coco: {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"from_coco: {path} is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"from_coco: {path} has no 'images' list; is it a COCO captions file?")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"from_coco: {path} has no 'annotations' list; is it a COCO captions file?")
    return data


def _categories(data, path):
    """`{id: name}` of `categories[]`; it names every label, so a broken entry is an error whatever `on_error`."""
    categories = data.get("categories") or []
    if not isinstance(categories, list):
        raise ValueError(f"from_coco: {path}: 'categories' must be a list, got {type(categories).__name__}.")
    names, where = {}, {}
    for i, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            raise ValueError(f"from_coco: {path}: categories[{i}] needs an integer or string 'id', "
                             f"got {category!r:.80}.")
        if category["id"] in names:
            raise ValueError(f"from_coco: {path}: categories[{where[category['id']]}] and categories[{i}] "
                             f"both have id {category['id']!r}.")
        names[category["id"]], where[category["id"]] = str(category.get("name", category["id"])), i
    return names


def _is_id(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _int32(image_id):
    """`image_id` as a non-negative int32 label, or None."""
    if isinstance(image_id, str):
        try:
            image_id = int(image_id) if image_id.isdecimal() else -1
        except ValueError:  # more digits than Python converts: out of range anyway
            image_id = -1
    return image_id if 0 <= image_id < 2**31 else None


def _check_images(data, annotations_json, image_dir, labelled=False):
    """`(images, dropped, reports)` for `images[]`.

    `images` maps id to each usable entry; `dropped` maps the ids of bad
    entries to the reason (their annotations are bad too); `reports` lists
    the bad entries as `(source, reason)` in `images[]` order. Two entries
    with one `id`, or two naming one file (however its path is spelled), are
    all bad: which one the annotations mean cannot be told. When `labelled`,
    an entry without a usable `category_id` is bad too.
    """
    problems = collections.defaultdict(list)
    by_id, by_file = collections.defaultdict(list), collections.defaultdict(list)
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            problems[i].append("needs 'id' and 'file_name'")
        elif not _is_id(image["id"]):
            problems[i].append(f"image id must be an integer or a string, got {image['id']!r}")
        elif not isinstance(image["file_name"], str) or not image["file_name"]:
            problems[i].append(f"file_name must be a non-empty string, got {image['file_name']!r}")
        else:
            by_file[same_file_key(resolve_path(image_dir, image["file_name"]))].append((i, image))
        if labelled and isinstance(image, dict):
            if "category_id" not in image:
                problems[i].append("no 'category_id', which other images have")
            elif not _is_id(image["category_id"]):
                problems[i].append(f"category_id must be an integer or a string, got {image['category_id']!r}")
        if isinstance(image, dict) and _is_id(image.get("id")):
            by_id[image["id"]].append((i, image))
    for image_id, group in by_id.items():
        if len(group) > 1:
            named = ", ".join(f"images[{i}] {image.get('file_name')!r}" for i, image in group)
            for i, _ in group:
                problems[i].append(f"image id {image_id!r} is used by {len(group)} images: {named}")
    for group in by_file.values():
        if len(group) > 1:
            named = ", ".join(f"images[{i}] id {image['id']!r}" for i, image in group)
            for i, image in group:
                problems[i].append(f"file {image['file_name']!r} is named by {len(group)} images: {named}")
    reports = [(f"{annotations_json}: images[{i}]", "; ".join(problems[i])) for i in sorted(problems)]
    images, dropped = {}, {}
    for image_id, group in by_id.items():
        bad = [i for i, _ in group if i in problems]
        if bad:
            dropped[image_id] = f"images[{bad[0]}] {'; '.join(problems[bad[0]])}"
        else:
            images[image_id] = group[0][1]
    return images, dropped, reports


def _annotation_sources(data, annotations_json):
    """The name of each annotation in reports: `annotation <id>`, with its index where ids repeat."""
    ids = [a["id"] if isinstance(a, dict) and _is_id(a.get("id")) else None for a in data["annotations"]]
    counts = collections.Counter(i for i in ids if i is not None)
    sources, repeated = [], {}
    for index, annotation_id in enumerate(ids):
        if annotation_id is None:
            sources.append(f"{annotations_json}: annotation {index}")
        elif counts[annotation_id] > 1:
            sources.append(f"{annotations_json}: annotation {annotation_id} (annotations[{index}])")
            repeated.setdefault(annotation_id, []).append(index)
        else:
            sources.append(f"{annotations_json}: annotation {annotation_id}")
    return sources, {
        annotation_id: f"annotation id {annotation_id!r} is used by {len(where)} annotations: "
        + ", ".join(f"annotations[{i}]" for i in where)
        for annotation_id, where in repeated.items()
    }


def from_coco(annotations_json, image_dir, captions="sample", target=None, on_error="raise", **pipeline_kwargs):
    """Read COCO captions: `images[]` (`id`, `file_name`) and `annotations[]` (`image_id`, `caption`).

    `captions="sample"` gives one example per image with one of its captions
    drawn afresh each epoch; `"all"` one example per (image, caption) pair;
    `"references"` one example per image with all its captions as the target
    (a `[B, R]` tf.string batch padded with "", R the most captions of any
    image): for `Captioner.evaluate`, which then scores each generated caption
    against every reference as the COCO evaluation does (not for `fit`).
    When images carry a `category_id` (with `categories[]` naming them), they
    are labelled too: `target="label"` then trains a classifier on image +
    caption. `target="image_id"` keeps image + caption as features with the
    COCO image id as target, so retrieval metrics can count every caption of
    an image as its match. The default `target` is "text" (captions as
    targets, for captioners). The file is UTF-8 JSON; a leading byte-order
    mark is accepted and dropped.

    An image with no annotation makes no example. These are bad records
    (see `kerasmm.data.errors`):
    - an `images[]` entry without `id` and `file_name`, or, when other
      entries carry a `category_id`, without a usable one of its own;
    - duplicates in `images[]`: entries sharing an `id`, or naming one file
      (however its path is spelled). Which one is meant cannot be told, so
      every entry involved is bad, and so is every annotation of their ids;
      the error names the id (or file) and each entry with its file (or id);
    - annotations sharing an `id` (every one of them), an annotation whose
      `image_id` has no (usable) image, an empty or non-UTF-8 caption;
    - a missing or broken image file;
    - with `target="image_id"`, an annotation of an image whose id is not an
      integer from 0 to 2**31 - 1.
    A `categories[]` entry without an integer or string `id`, or repeating
    one, stops the reader with a `ValueError` whatever `on_error`, since it
    concerns every label.
    Under `on_error="skip"` `dataset.skipped_records` lists each dropped
    `images[i]` entry and annotation.

    `validation_split=F` with `subset="training"`, `"validation"` or `"both"` (a
    `(training, validation)` pair) holds out F of the images, spread evenly through
    the reading order, the same ones every time (`RecordTable.dataset`).
    Other keyword arguments go to `kerasmm.data.pipeline.build`.

    Example:
    ```python
    ds = kerasmm.data.from_coco("annotations/captions_train2017.json", "train2017/",
                                image_size=224, batch_size=64, shuffle=True)
    ```
    """
    if captions == "references" and target not in (None, "text"):
        raise ValueError("captions='references' gives every caption of an image as the target: use target='text'.")
    if target == "image_id":
        if captions != "all":
            raise ValueError("target='image_id' pairs each caption with its image id: use captions='all'.")
    validation.one_of("captions", captions, CAPTION_MODES)
    data = load_coco_json(annotations_json)
    names = _categories(data, annotations_json)
    table = RecordTable(f"from_coco({annotations_json})", on_error)
    labelled = any(isinstance(image, dict) and "category_id" in image for image in data["images"])
    images, dropped, reports = _check_images(data, annotations_json, image_dir, labelled)
    for source, reason in reports:
        table.bad(source, reason)
    sources, repeated_ids = _annotation_sources(data, annotations_json)
    by_image = collections.defaultdict(list)
    for i, annotation in enumerate(data["annotations"]):
        source = sources[i]
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            table.bad(source, "needs 'image_id' and 'caption'")
        elif _is_id(annotation.get("id")) and annotation["id"] in repeated_ids:
            table.bad(source, repeated_ids[annotation["id"]])
        elif _is_id(annotation["image_id"]) and annotation["image_id"] in dropped:
            table.bad(source, f"image_id {annotation['image_id']!r} has no usable image: "
                              f"{dropped[annotation['image_id']]}")
        elif not _is_id(annotation["image_id"]) or annotation["image_id"] not in images:
            table.bad(source, f"image_id {annotation['image_id']!r} has no image")
        else:
            caption, reason = check_text(annotation["caption"])
            if reason:
                table.bad(source, reason)
            else:
                by_image[annotation["image_id"]].append((source, caption))

    if labelled:
        # Integer ids in order, then string ids: an id may be either.
        ids = sorted({image["category_id"] for image in images.values()} | set(names),
                     key=lambda i: (isinstance(i, str), i))
        table.class_names = [names.get(i, str(i)) for i in ids]
        label_of = {category: index for index, category in enumerate(ids)}
    for image_id, annotations in by_image.items():
        image = images[image_id]
        path = resolve_path(image_dir, image["file_name"])
        label = label_of[image["category_id"]] if labelled else None
        if target == "image_id":
            label = _int32(image_id)
            if label is None:
                for source, _ in annotations:
                    table.bad(source, f"image id {image_id!r} is not an integer from 0 to 2**31 - 1, "
                                      "which target='image_id' needs")
                continue
        if captions == "all":
            for source, caption in annotations:
                table.add(source, image=path, text=caption, label=label)
        else:
            table.add(f"{annotations_json}: image {image_id}", image=path,
                      captions=[c for _, c in annotations], label=label)
    if target is None:
        target = "text"
    if target == "image_id":
        table.class_names = None
        target = "label"
    if captions == "references":
        pipeline_kwargs["all_captions"] = True
    return table.dataset(target=target, **pipeline_kwargs)
