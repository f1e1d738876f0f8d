"""`from_manifest`: JSONL or CSV rows naming image path, audio path, text and label."""

import collections
import csv
import io
import json
import os

from kerasmm.data.record_table import RecordTable, read_without_bom, resolve_path, same_file_key

COLUMNS = ("image", "audio", "text", "label")
MAX_LABEL = 2**31 - 1  # the pipeline's labels are int32


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs):
    """`json.loads` hook: a dict, refusing an object that names one key twice (json keeps the last silently)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _RepeatedKey(repeated)
    return dict(pairs)


def _jsonl_rows(lines):
    for number, raw, reason in lines:
        if reason:
            yield number, None, reason
            continue
        try:
            row = json.loads(raw, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            yield number, None, f"malformed JSON ({e.msg})"
            continue
        except _RepeatedKey as e:
            yield number, None, f"names the field(s) {', '.join(map(repr, e.args[0]))} more than once"
            continue
        except ValueError as e:  # an integer of more digits than Python converts
            yield number, None, f"malformed JSON ({e})"
            continue
        except RecursionError:
            yield number, None, "malformed JSON (nested too deeply)"
            continue
        if not isinstance(row, dict):
            yield number, None, "a JSON line must be an object"
            continue
        unknown = [key for key in row if key not in COLUMNS]
        if unknown:
            yield number, None, f"unknown field(s) {', '.join(map(repr, unknown))}; valid fields: {COLUMNS}"
            continue
        yield number, row, None


def _csv_values(raw):
    """The fields of one CSV line; `csv.Error` (a field over `csv.field_size_limit()`) as ValueError."""
    try:
        return next(csv.reader(io.StringIO(raw)), [])
    except csv.Error as e:
        raise ValueError(str(e)) from None


def _csv_header(path, number, raw):
    """The column names of the header line; a header this reader cannot trust stops it whatever `on_error`."""
    if raw is None:
        raise ValueError(f"from_manifest: {path}:{number}: the CSV header is not valid UTF-8.")
    try:
        header = _csv_values(raw)
    except ValueError as e:
        raise ValueError(f"from_manifest: {path}:{number}: malformed CSV header ({e}).") from None
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise ValueError(
            f"from_manifest: {path}:{number}: unknown column(s) {', '.join(map(repr, unknown))} "
            f"in the CSV header; valid columns: {COLUMNS}."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(
            f"from_manifest: {path}:{number}: the CSV header names {', '.join(map(repr, repeated))} more than once."
        )
    return header


def _csv_rows(path, lines):
    if not lines:
        return
    header = _csv_header(path, lines[0][0], lines[0][1])
    for number, raw, reason in lines[1:]:
        if reason:
            yield number, None, reason
            continue
        try:
            values = _csv_values(raw)
        except ValueError as e:
            yield number, None, f"malformed CSV row ({e})"
            continue
        if len(values) != len(header):
            yield number, None, f"malformed CSV row: {len(values)} fields where the header has {len(header)}"
            continue
        yield number, {k: v for k, v in zip(header, values) if v != ""}, None


def read_rows(path):
    """`(line number, row, reason)` for each non-blank line of a manifest, parsed as `from_manifest` parses it.

    A CSV manifest (`path` ending in `.csv`) gives its header's columns, a
    JSONL one each line's object. `row` is the line's fields as a dict (JSON
    values, or CSV strings with empty fields left out) and `reason` None; or
    `row` is None and `reason` says why the line does not parse (not UTF-8,
    malformed, a field not in `COLUMNS` or named twice). Field types and the
    files rows name are not checked. A generator: a CSV header naming an
    unknown column or one twice raises ValueError when iteration starts. A
    leading UTF-8 byte-order mark is dropped.

    Example:
    ```python
    from kerasmm.data import manifest
    good = [row for _, row, reason in manifest.read_rows("train.jsonl") if reason is None]
    ```
    """
    lines = []  # (line number, text or None, reason or None) of the non-blank lines
    for number, raw in enumerate(read_without_bom(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            lines.append((number, raw.decode("utf-8"), None))
        except UnicodeDecodeError:
            lines.append((number, None, "line is not valid UTF-8"))
    yield from _csv_rows(path, lines) if os.path.splitext(path)[1].lower() == ".csv" else _jsonl_rows(lines)


def _json_type(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a non-integer number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _field_problem(fields):
    """Why a row's fields have the wrong type (JSON can give any), or None."""
    for key in ("image", "audio"):
        if key in fields and not isinstance(fields[key], str):
            return f"{key} must be a file path (a string), got {_json_type(fields[key])}"
    if "label" in fields:
        label = fields["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            return f"label must be a class name (a string) or index (an integer), got {_json_type(label)}"
        if isinstance(label, int) and not 0 <= label <= MAX_LABEL:
            return f"label index {label} is not between 0 and {MAX_LABEL}"
    return None


def _index(label):
    """An index label (an int, or a string of decimal digits) as an int."""
    try:
        return int(label)
    except ValueError:  # more digits than Python converts: out of range anyway
        return MAX_LABEL + 1


def _input_key(fields):
    """What a label describes: the row's image/audio files (however spelled), or its text when it names none."""
    files = tuple((key, same_file_key(fields[key])) for key in ("image", "audio") if key in fields)
    if files:
        return files
    text = fields.get("text")
    return (("text", text.strip()),) if isinstance(text, str) else None


def _describe_input(fields):
    files = [f"{key} {fields[key]}" for key in ("image", "audio") if key in fields]
    return " with ".join(files) if files else f"text {fields['text'].strip()!r}"


def _label_conflicts(kept, class_names):
    """`{line number: reason}` for rows whose input another row gives a different label."""
    groups = collections.defaultdict(list)
    for number, fields in kept:
        key = _input_key(fields)
        if key is not None and "label" in fields:
            groups[key].append((number, fields))
    conflicts = {}
    for members in groups.values():
        lines_of = {}
        for number, fields in members:
            lines_of.setdefault(fields["label"], []).append(number)
        if len(lines_of) < 2:
            continue
        named = []
        for label, numbers in lines_of.items():
            name = repr(class_names[label]) if class_names is not None else str(label)
            named.append(f"{name} on line{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}")
        named = ", ".join(named)
        reason = f"{_describe_input(members[0][1])} has conflicting labels: {named}"
        conflicts.update((number, reason) for number, _ in members)
    return conflicts


def from_manifest(path, target=None, on_error="raise", **pipeline_kwargs):
    """Read a JSONL (`.jsonl`/`.json`) or CSV (`.csv`) manifest of records.

    Each row names any of `image` and `audio` (paths, relative to the
    manifest's folder unless absolute), `text` (the caption) and `label`
    (a class name or index); every row must name the same fields. String
    labels become indices in sorted order, kept on `dataset.class_names`.
    The file is UTF-8; a leading byte-order mark (what spreadsheet programs
    write for "CSV UTF-8") is accepted and dropped.

    A CSV header naming a column that is not one of `COLUMNS` (a typo such
    as `imgae`), or naming one twice, stops the reader with a `ValueError`
    whatever `on_error`, since it concerns every row. Bad records (see
    `kerasmm.data.errors`): a malformed line (a CSV field over
    `csv.field_size_limit()` included), a line that is not UTF-8, a JSON
    line with a field not in `COLUMNS` or a field named twice, a path that
    is not a string, a label that is neither a string nor an integer, an
    index label outside 0 to 2**31 - 1 (labels are int32), a missing or
    broken file, an empty caption, and rows that give one input
    different labels: the same image (and audio) file, however its path is
    spelled, or for text-only rows the same text. Every row of such a
    conflict is bad, as none of them can be trusted; the error names the
    file, the lines and the labels. Rows bad for another reason take no part
    in conflicts. One image with several captions (rows differing only in
    `text`, with the same label or none) is ordinary caption data and is
    kept, as are exact repeats of a row.

    `validation_split=F` with `subset="training"`, `"validation"` or `"both"` (a
    `(training, validation)` pair) holds out F of the images, spread evenly through
    the reading order, the same ones every time (`RecordTable.dataset`).
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
    kept = []
    for number, row, reason in read_rows(path):
        if reason:
            table.bad(f"{path}:{number}", reason)
            continue
        fields = {k: row[k] for k in COLUMNS if k in row}
        reason = f"names none of the fields {COLUMNS}" if not fields else _field_problem(fields)
        if reason:
            table.bad(f"{path}:{number}", reason)
            continue
        for key in ("image", "audio"):
            if key in fields:
                fields[key] = resolve_path(base, fields[key])
        kept.append((number, fields))

    labels = [f["label"] for _, f in kept if "label" in f]  # str or int (_field_problem)
    if labels and all(isinstance(v, int) or v.isdecimal() for v in labels):
        to_index = _index
    else:
        table.class_names = sorted({str(v) for v in labels})
        index = {name: i for i, name in enumerate(table.class_names)}
        to_index = lambda v: index[str(v)]  # noqa: E731
    indexed = []
    for number, fields in kept:
        if "label" in fields:
            fields["label"] = to_index(fields["label"])
            if fields["label"] > MAX_LABEL:
                table.bad(f"{path}:{number}", f"label index {fields['label']} is not between 0 and {MAX_LABEL}")
                continue
        indexed.append((number, fields))
    # A row bad for another reason (an empty caption, a broken file) is no
    # evidence against the others: labels conflict only among usable rows.
    checked = [(number, *table.check(**fields)) for number, fields in indexed]
    conflicts = _label_conflicts([(n, f) for n, f, reason in checked if reason is None], table.class_names)
    for number, fields, reason in checked:
        reason = reason or conflicts.get(number)
        if reason:
            table.bad(f"{path}:{number}", reason)
        else:
            table.keep(fields, f"{path}:{number}")
    return table.dataset(target=target, **pipeline_kwargs)
