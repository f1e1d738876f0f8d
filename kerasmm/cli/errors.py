"""One-line messages for the errors a `kerasmm` command reports to its user (see `kerasmm.cli`)."""

import re
import sys

MAX_ERROR_LENGTH = 500
TF_ERROR_LENGTH = 200  # an op's words can end in every label of the batch
# Where Keras starts dumping a config or a layer's call arguments into a message: nothing a user acts on.
_DUMPS = ("Full object config:", "config={", "Arguments received by", "{'module':")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What a TF graph error wraps around the op's own words.
_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
_TF_NODE = re.compile(r"\s*(\[\[\{\{node .*?\}\}\]\]|\[Op:[^\]]*\])")


def one_line(error, limit=MAX_ERROR_LENGTH):
    """An exception's message on a single line of at most `limit` characters, Keras' dumps cut off."""
    text = _ANSI.sub("", str(error))
    for marker in _DUMPS:
        text = text.split(marker, 1)[0]
    text = " ".join(text.split()).rstrip(" :,")
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return text or type(error).__name__


def tf_error_line(error):
    """The op's own words out of a TensorFlow `OpError`: no stack traces, node names or op names."""
    lines = [line for line in error.message.splitlines() if line.strip() and not line[0].isspace()]
    lines = [_TF_NODE.sub("", line).strip() for line in lines if not line.strip().startswith(_TF_NOISE)]
    lines = [line for line in lines if line]
    return one_line(lines[0] if lines else type(error).__name__, limit=TF_ERROR_LENGTH)


def cause(error):
    """The innermost cause of a (Keras) error in one sentence, e.g. why a `.keras` file does not load."""
    text = one_line(str(error).rsplit("Exception encountered:", 1)[-1]).strip("'\" ")
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".") or type(error).__name__


def user_error(error):
    """The one-line message of an error the user can act on, or None for a bug (which keeps its traceback)."""
    from kerasmm.data.errors import BadRecordError

    if isinstance(error, (ValueError, OSError, BadRecordError)):
        return one_line(error)
    tf = sys.modules.get("tensorflow")  # no TF error can happen before TF is imported
    if tf is not None and isinstance(error, tf.errors.OpError):
        line = tf_error_line(error)
        if "label value" in line and "outside the valid range" in line:
            line += " (a label the model has no class for: fix the labels or set --set model.num_classes=N)"
        return f"TensorFlow stopped: {line}"
    return None
