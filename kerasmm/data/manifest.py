"""`from_manifest`: JSONL or CSV rows naming image path, audio path, text and label."""

import csv
import io
import json
import os

from kerasmm.data.records import RecordTable, resolve_path

COLUMNS = ("image", "audio", "text", "label")


def _jsonl_rows(lines):
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            yield number, None, f"malformed JSON ({e.msg})"
            continue
        if not isinstance(row, dict):
            yield number, None, "a JSON line must be an object"
            continue
        yield number, row, None


def _csv_rows(lines):
    lines = [(n, line) for n, line in lines if line.strip()]
    if not lines:
        return
    header = next(csv.reader([lines[0][1]]))
    for number, raw in lines[1:]:
        values = next(csv.reader(io.StringIO(raw)), [])
        if len(values) != len(header):
            yield number, None, f"malformed CSV row: {len(values)} fields where the header has {len(header)}"
            continue
        yield number, {k: v for k, v in zip(header, values) if v != ""}, None


def from_manifest(path, target=None, on_error="raise", **pipeline_kwargs):
    """Read a JSONL (`.jsonl`/`.json`) or CSV (`.csv`) manifest of records.

    Each row names any of `image` and `audio` (paths, relative to the
    manifest's folder unless absolute), `text` (the caption) and `label`
    (a class name or index); every row must name the same fields. String
    labels become indices in sorted order, kept on `dataset.class_names`.
    A malformed line, a line that is not UTF-8, a missing or broken file and
    an empty caption are bad records (see `kerasmm.data.errors`).

    Other keyword arguments go to `kerasmm.data.pipeline.build`.

    Example:
    ```python
    # rows like {"image": "img/1.jpg", "text": "a red circle", "label": "circle"}
    ds = kerasmm.data.from_manifest("train.jsonl", image_size=64)
    ```
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".jsonl", ".json", ".csv"):
        raise ValueError(f"from_manifest: {path!r} must end in .jsonl, .json or .csv.")
    if not os.path.isfile(path):
        raise ValueError(f"from_manifest: no manifest file {path!r}.")
    base = os.path.dirname(os.path.abspath(path))
    table = RecordTable(f"from_manifest({path})", on_error)
    with open(path, "rb") as f:
        raw_lines = f.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            table.bad(f"{path}:{number}", "line is not valid UTF-8")
    rows = _csv_rows(lines) if extension == ".csv" else _jsonl_rows(lines)
    kept = []
    for number, row, reason in rows:
        source = f"{path}:{number}"
        if reason:
            table.bad(source, reason)
            continue
        fields = {k: row[k] for k in COLUMNS if k in row}
        if not fields:
            table.bad(source, f"names none of the fields {COLUMNS}")
            continue
        for key in ("image", "audio"):
            if key in fields:
                fields[key] = resolve_path(base, str(fields[key]))
        kept.append((source, fields))

    labels = [f["label"] for _, f in kept if "label" in f]
    if labels and all(isinstance(v, int) or (isinstance(v, str) and v.isdigit()) for v in labels):
        to_index = int
    else:
        table.class_names = sorted({str(v) for v in labels})
        index = {name: i for i, name in enumerate(table.class_names)}
        to_index = lambda v: index[str(v)]  # noqa: E731
    for source, fields in kept:
        if "label" in fields:
            fields["label"] = to_index(fields["label"])
        table.add(source, **fields)
    return table.dataset(target=target, **pipeline_kwargs)
