"""`from_coco`: the COCO captions layout (images[] + annotations[] with captions)."""

import collections
import json
import os

from kerasmm.data.records import RecordTable, check_text, resolve_path

CAPTION_MODES = ("sample", "all")


def load_coco_json(path):
    """The parsed annotation file; captions that are not UTF-8 survive as lone surrogates."""
    if not os.path.isfile(path):
        raise ValueError(f"from_coco: no annotation file {path!r}.")
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"from_coco: {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"from_coco: {path} has no 'images' list; is it a COCO captions file?")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"from_coco: {path} has no 'annotations' list; is it a COCO captions file?")
    return data


def from_coco(annotations_json, image_dir, captions="sample", target=None, on_error="raise", **pipeline_kwargs):
    """Read COCO captions: `images[]` (`id`, `file_name`) and `annotations[]` (`image_id`, `caption`).

    `captions="sample"` gives one example per image with one of its captions
    drawn afresh each epoch; `"all"` one example per (image, caption) pair.
    When images carry a `category_id` (with `categories[]` naming them), they
    are labelled too: `target="label"` then trains a classifier on image +
    caption. `target="image_id"` keeps image + caption as features with the
    COCO image id as target, so retrieval metrics can count every caption of
    an image as its match. The default `target` is "text" (captions as
    targets, for captioners). An annotation whose
    `image_id` has no image, an empty or non-UTF-8 caption and a missing or
    broken image file are bad records (see `kerasmm.data.errors`).

    Other keyword arguments go to `kerasmm.data.pipeline.build`.

    Example:
    ```python
    ds = kerasmm.data.from_coco("annotations/captions_train2017.json", "train2017/",
                                image_size=224, batch_size=64, shuffle=True)
    ```
    """
    if target == "image_id":
        if captions != "all":
            raise ValueError("target='image_id' pairs each caption with its image id: use captions='all'.")
    if captions not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}.")
    data = load_coco_json(annotations_json)
    table = RecordTable(f"from_coco({annotations_json})", on_error)
    images = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            table.bad(f"{annotations_json}: images[{i}]", "needs 'id' and 'file_name'")
            continue
        images[image["id"]] = image
    by_image = collections.defaultdict(list)
    for i, annotation in enumerate(data["annotations"]):
        source = f"{annotations_json}: annotation {annotation.get('id', i) if isinstance(annotation, dict) else i}"
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            table.bad(source, "needs 'image_id' and 'caption'")
        elif annotation["image_id"] not in images:
            table.bad(source, f"image_id {annotation['image_id']!r} has no image")
        else:
            caption, reason = check_text(annotation["caption"])
            if reason:
                table.bad(source, reason)
            else:
                by_image[annotation["image_id"]].append((source, caption))

    labelled = bool(images) and all("category_id" in image for image in images.values())
    if labelled:
        names = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", [])}
        ids = sorted({image["category_id"] for image in images.values()} | set(names))
        table.class_names = [str(names.get(i, i)) for i in ids]
        label_of = {category: index for index, category in enumerate(ids)}
    for image_id, annotations in by_image.items():
        image = images[image_id]
        path = resolve_path(image_dir, image["file_name"])
        label = label_of[image["category_id"]] if labelled else None
        if target == "image_id":
            label = int(image_id)
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
    return table.dataset(target=target, **pipeline_kwargs)
