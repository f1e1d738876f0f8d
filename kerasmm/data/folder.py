"""`from_folder`: images with sidecar captions (and audio), class label = first-level subfolder."""

import os

from kerasmm.data import image_ops
from kerasmm.data.record_table import RecordTable

# decode_image reads WebP too; check_image turns an animated one (which it cannot read) into a bad record.
_EXTENSIONS = image_ops.IMAGE_EXTENSIONS + (".webp",)


def _images_under(folder):
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in _EXTENSIONS:
                found.append(os.path.join(dirpath, name))
    return found


def from_folder(root, target=None, on_error="raise", **pipeline_kwargs):
    """Read `root/[CLASS/]NAME.{jpg,png,gif,bmp,webp}` with optional `NAME.txt` and `NAME.wav` beside each.

    When `root` has subfolders, each first-level subfolder is a class (labels
    in sorted name order, also on `dataset.class_names`) and images directly
    in `root` are ignored; otherwise the images are unlabelled. A `NAME.txt`
    beside an image holds its caption (first line); a `NAME.wav` its audio.
    Once any image has a caption (or audio), every image needs one: an image
    without is a bad record, and so is an image `image_header.check_image`
    refuses (corrupt, truncated, too large, an animated WebP).

    Yields batched `(features, targets)`: features `"image"` (uint8) plus
    `"text"` and `"audio"` where present; targets the class index
    (`target="label"`, the default when there are classes) or the caption
    (`target="text"`, which moves the caption out of the features).
    `validation_split=F` with `subset="training"`, `"validation"` or `"both"` (a
    `(training, validation)` pair) holds out F of the images, spread evenly through
    the reading order, the same ones every time (`RecordTable.dataset`).
    Other keyword arguments go to `kerasmm.data.pipeline.build` (batch_size,
    image_size, shuffle, augment, input_context, ...).

    Example:
    ```python
    ds = kerasmm.data.from_folder("photos/", image_size=64, batch_size=16)
    ds.class_names   # ['cats', 'dogs']
    train, val = kerasmm.data.from_folder("photos/", image_size=64, validation_split=0.2, subset="both")
    ```
    """
    if not os.path.isdir(root):
        raise ValueError(f"from_folder: {root!r} is not a directory.")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    groups = [(i, os.path.join(root, c)) for i, c in enumerate(classes)] if classes else [(None, root)]
    if not classes:
        images = [p for p in _images_under(root) if os.path.dirname(p) == os.path.normpath(root)]
        listing = [(None, p) for p in images]
    else:
        listing = [(label, p) for label, folder in groups for p in _images_under(folder)]
    if not listing:
        raise ValueError(f"from_folder: no images ({', '.join(_EXTENSIONS)}) under {root!r}.")
    has_text = any(os.path.exists(os.path.splitext(p)[0] + ".txt") for _, p in listing)
    has_audio = any(os.path.exists(os.path.splitext(p)[0] + ".wav") for _, p in listing)

    table = RecordTable(f"from_folder({root})", on_error)
    table.class_names = classes or None
    for label, image in listing:
        stem = os.path.splitext(image)[0]
        fields = {"image": image, "label": label}
        if has_text:
            caption = _first_line(stem + ".txt")
            if caption is None:
                table.bad(image, f"no caption file {os.path.basename(stem)}.txt")
                continue
            fields["text"] = caption
        if has_audio:
            fields["audio"] = stem + ".wav"
        table.add(image, **fields)
    return table.dataset(target=target, **pipeline_kwargs)


def _first_line(path):
    """The caption file's first line as bytes (checked for UTF-8 later), or None if missing."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.readline().rstrip(b"\r\n")
