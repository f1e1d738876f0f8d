"""Checked record tables: what file readers collect before building a pipeline."""

import math
import os

from kerasmm import validation
from kerasmm.data import audio_ops, errors, image_header, pipeline

FIELDS = ("image", "audio", "text", "captions", "label")
SUBSETS = ("training", "validation", "both")
UTF8_BOM = b"\xef\xbb\xbf"


def check_text(value):
    """`(caption, None)` for usable text (str or UTF-8 bytes), else `(None, reason)`.

    Bytes are a caption file's line (or a TFDS string): a leading UTF-8
    byte-order mark, which Notepad writes, is dropped.
    """
    if isinstance(value, bytes):
        try:
            value = value.removeprefix(UTF8_BOM).decode("utf-8")
        except UnicodeDecodeError:
            return None, "caption is not valid UTF-8"
    if not isinstance(value, str):
        return None, f"caption must be a string, got {type(value).__name__}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, "caption is not valid UTF-8"
    value = value.strip()
    if not value:
        return None, "empty caption"
    return value, None


class RecordTable:
    """Collects records as columns, checking each under the bad-record policy.

    Example:
    ```python
    table = RecordTable("my reader", on_error="skip")
    table.add("row 1", text="a red circle", label=0)
    table.add("row 2", text="", label=1)   # dropped: empty caption
    ds = table.dataset(target="label", batch_size=2)
    ds.skipped_records.summary()
    ```
    """

    def __init__(self, reader, on_error="raise"):
        self.on_error = errors.check_on_error(on_error)
        self.skipped = errors.SkippedRecords(reader)
        self.columns = None
        self.sources = []  # of the kept records, for reporting one that fails to decode
        self.class_names = None

    def bad(self, source, reason):
        errors.bad_record(self.on_error, self.skipped, source, reason)

    def add(self, source, **fields):
        """Check one record's fields and keep it, or handle it as bad; returns whether kept."""
        fields, reason = self.check(**fields)
        if reason is not None:
            self.bad(source, reason)
            return False
        self.keep(fields, source)
        return True

    def check(self, **fields):
        """`(fields, reason)`: the record's cleaned fields, and why it is bad or `None`.

        For readers that look across records before keeping any (a reader
        that finds conflicting records): `check` each record in order, then
        `keep` the good ones or hand the bad ones to `bad`. The first good
        record checked fixes the fields every record must have.
        """
        fields = {k: v for k, v in fields.items() if v is not None}
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"Unknown record fields {sorted(unknown)}; valid fields: {FIELDS}.")
        reason = self._problem(fields)
        if reason is None and self.columns is not None and set(fields) != set(self.columns):
            missing = sorted(set(self.columns) - set(fields))
            extra = sorted(set(fields) - set(self.columns))
            reason = f"missing {missing}" if missing else f"has {extra}, which earlier records lack"
        if reason is None and self.columns is None:
            self.columns = {k: [] for k in fields}
        return fields, reason

    def keep(self, fields, source=None):
        """Keep a record that `check` passed (`source` names it if it later fails to decode)."""
        for key, value in fields.items():
            self.columns[key].append(value)
        self.sources.append(source)

    def _problem(self, fields):
        if "image" in fields:
            reason = image_header.check_image(fields["image"])
            if reason:
                return f"image {fields['image']}: {reason}"
        if "audio" in fields:
            reason = audio_ops.check_wav(fields["audio"])
            if reason:
                return f"audio {fields['audio']}: {reason}"
        if "text" in fields:
            text, reason = check_text(fields["text"])
            if reason:
                return reason
            fields["text"] = text
        if "captions" in fields:
            checked = [check_text(c) for c in fields["captions"]]
            problems = [r for _, r in checked if r]
            if problems or not checked:
                return problems[0] if problems else "no captions"
            fields["captions"] = [c for c, _ in checked]
        return None

    def dataset(self, target=None, validation_split=None, subset=None, **pipeline_kwargs):
        """The batched pipeline over the kept records, reporting the skipped ones.

        With `validation_split` F and `subset` "training", "validation" or
        "both" (a `(training, validation)` pair), about F of the records are
        held out (see `held_out_groups`); records of one image stay on one side.
        The validation part is neither shuffled nor augmented.
        """
        if not self.columns or not any(self.columns.values()):
            detail = f" ({self.skipped.summary()})" if len(self.skipped) else ""
            raise ValueError(f"{self.skipped.reader}: no usable records{detail}.")
        if target is None:
            target = "label" if "label" in self.columns else "text"
        # File paths go to TensorFlow as the file system's bytes: a name that is not UTF-8 (a Latin-1 name
        # on Linux, which Python holds with lone surrogates) then reads the file it names; as str,
        # TensorFlow would refuse the whole column.
        columns = {k: [os.fsencode(p) for p in v] if k in ("image", "audio") else v for k, v in self.columns.items()}
        if self.on_error == "skip" and "image" in columns:
            columns = self._drop_undecodable(columns, pipeline_kwargs)
        if validation_split is None and subset is None:
            return self._finish(pipeline.build(columns, target=target, **pipeline_kwargs))
        subset = validation.one_of("subset", subset, SUBSETS)
        fraction = validation.fraction("validation_split", validation_split)
        held_out = held_out_groups(columns.get("image") or range(len(next(iter(columns.values())))), fraction)
        parts = {}
        for name, keep in (("training", False), ("validation", True)):
            part = {k: [v for v, held in zip(values, held_out) if held == keep] for k, values in columns.items()}
            if not part[next(iter(part))]:
                raise ValueError(f"{self.skipped.reader}: validation_split={validation_split} of "
                                 f"{len(held_out)} records leaves no {name} records.")
            kwargs = pipeline_kwargs if name == "training" else {**pipeline_kwargs, "shuffle": False,
                                                                 "augment": False}
            parts[name] = self._finish(pipeline.build(part, target=target, **kwargs))
        return (parts["training"], parts["validation"]) if subset == "both" else parts[subset]

    def _finish(self, ds):
        ds.class_names = self.class_names
        return errors.attach(ds, self.skipped)

    def _drop_undecodable(self, columns, pipeline_kwargs):
        """`columns` less the records whose image fails to load as the pipeline loads it (skip mode only).

        The header pre-check cannot see damage inside the image data; one
        decoding pass here does, so skip mode never fails mid-epoch.
        """
        unique = list(dict.fromkeys(columns["image"]))
        failed = pipeline.undecodable_images(unique, pipeline_kwargs.get("image_size", 224),
                                             pipeline_kwargs.get("aspect_policy", "crop"))
        bad = {unique[i]: reason for i, reason in failed.items()}
        if not bad:
            return columns
        keep = [i for i, image in enumerate(columns["image"]) if image not in bad]
        for i, image in enumerate(columns["image"]):
            if image in bad:
                self.bad(self.sources[i] or os.fsdecode(image), f"image {os.fsdecode(image)}: {bad[image]}")
        if not keep:
            raise ValueError(f"{self.skipped.reader}: no usable records ({self.skipped.summary()}).")
        return {k: [v[i] for i in keep] for k, v in columns.items()}


def held_out_groups(keys, fraction):
    """Per record, whether a `fraction` split holds it out: the n-th distinct key (an image, in reading order)
    is held out when floor((n + 1) fraction) > floor(n fraction).

    That holds out floor(N fraction) of N keys, spread evenly through the reading order (so each class of a
    folder read class by class), the same ones every time; records sharing a key share its side.
    """
    order = {}
    for key in keys:
        order.setdefault(key, len(order))
    return [math.floor((order[key] + 1) * fraction) > math.floor(order[key] * fraction) for key in keys]


def resolve_path(base_dir, path):
    """`path` as given if absolute, else relative to `base_dir`."""
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def same_file_key(path):
    """A key equal for two spellings of one file path (`img/1.png`, `./img/1.png`, `img//1.png`)."""
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def read_without_bom(path):
    """The bytes of `path` less a leading UTF-8 byte-order mark (spreadsheets' "CSV UTF-8" writes one)."""
    with open(path, "rb") as f:
        data = f.read()
    return data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data
