"""The bad-record policy every reader follows: `on_error="raise"` or `"skip"`.

With "raise" (the default) the first bad record stops the reader with a
`BadRecordError` naming the record (file, line or shard) and the reason.
With "skip" exactly the bad records are dropped, every good one is kept,
and the reader reports which were dropped: a warning with the count, and the
list on the returned dataset as `dataset.skipped_records` (a `SkippedRecords`;
datasets derived from it with `.map`, `.take`, ... do not carry it).

Example:
```python
from kerasmm.data import errors
skipped = errors.SkippedRecords("manifest.jsonl")
errors.bad_record("skip", skipped, "manifest.jsonl:3", "malformed JSON")
len(skipped)  # 1
```
"""

import logging

from kerasmm import validation

ON_ERROR = ("raise", "skip")
logger = logging.getLogger("kerasmm.data")


class BadRecordError(ValueError):
    """A record a reader cannot use; the message names the record and the reason."""

    def __init__(self, source, reason):
        self.source = source
        self.reason = reason
        super().__init__(f"Bad record {source}: {reason}. Pass on_error='skip' to drop bad records and keep the rest.")


class SkippedRecords:
    """The records a reader dropped under `on_error="skip"`: `(source, reason)` pairs."""

    def __init__(self, reader=""):
        self.reader = reader
        self.records = []

    def add(self, source, reason):
        self.records.append((source, reason))

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __repr__(self):
        return f"SkippedRecords({self.reader!r}, {len(self)} records)"

    def summary(self, limit=5):
        """One line: how many were dropped and the first few with their reasons."""
        if not self.records:
            return f"{self.reader}: no bad records."
        shown = "; ".join(f"{s} ({r})" for s, r in self.records[:limit])
        more = f"; and {len(self) - limit} more" if len(self) > limit else ""
        return f"{self.reader}: skipped {len(self)} bad record(s): {shown}{more}."

    def warn(self):
        if self.records:
            logger.warning(self.summary())


def check_on_error(on_error):
    return validation.one_of("on_error", on_error, ON_ERROR)


def bad_record(on_error, skipped, source, reason):
    """Raise for "raise"; record and carry on for "skip"."""
    if on_error == "raise":
        raise BadRecordError(source, reason)
    skipped.add(source, reason)


def attach(dataset, skipped):
    """Report `skipped` and hang it on `dataset` as `dataset.skipped_records`."""
    skipped.warn()
    dataset.skipped_records = skipped
    return dataset
