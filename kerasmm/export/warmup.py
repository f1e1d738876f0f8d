"""TF Serving warm-up requests: `assets.extra/tf_serving_warmup_requests`, a TFRecord of `PredictionLog`s.

TF Serving (with `--enable_model_warmup`, the default) replays these
requests when it loads a version, so the first real request does not pay for
graph optimisation (or XLA compilation). The protos are TF Serving's
(`tensorflow_serving/apis/prediction_log.proto`, `predict.proto`,
`model.proto`); when the `tensorflow_serving` package is not installed, the
few messages needed are built here from their field numbers over the
`TensorProto` that TensorFlow bundles:

    PredictionLog { PredictLog predict_log = 6; }
    PredictLog    { PredictRequest request = 1; }
    PredictRequest{ ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
    ModelSpec     { string name = 1; string signature_name = 3; }

Example:
```python
from kerasmm.export import warmup
warmup.write_requests("out/1", "captioner", {"serving_default": [{"image_bytes": [open("a.jpg", "rb").read()]}]})
warmup.read_requests("out/1")   # [("captioner", "serving_default", {"image_bytes": array([b'...'])})]
```
"""

import functools
import os

import numpy as np
import tensorflow as tf

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
_PACKAGE = "tensorflow.serving"


@functools.lru_cache(maxsize=1)
def prediction_log_class():
    """The `PredictionLog` message class: TF Serving's own if installed, else a wire-compatible subset."""
    try:
        from tensorflow_serving.apis import prediction_log_pb2

        return prediction_log_pb2.PredictionLog
    except ImportError:
        pass
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorflow.core.framework import tensor_pb2

    pool = descriptor_pool.DescriptorPool()
    _add_with_dependencies(pool, tensor_pb2.DESCRIPTOR, set())
    proto = descriptor_pb2.FileDescriptorProto(
        name="kerasmm/tensorflow_serving_prediction_log_subset.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[tensor_pb2.DESCRIPTOR.name],
    )
    label, optional = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL

    def message(name, *fields, options=None):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, type_name, field_label in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=field_label or optional)
            if type_name:
                f.type_name = type_name
        if options:
            m.options.CopyFrom(options)
        return m

    string, msg = label.TYPE_STRING, label.TYPE_MESSAGE
    message("ModelSpec", ("name", 1, string, None, None), ("signature_name", 3, string, None, None))
    request = message(
        "PredictRequest",
        ("model_spec", 1, msg, f".{_PACKAGE}.ModelSpec", None),
        ("inputs", 2, msg, f".{_PACKAGE}.PredictRequest.InputsEntry", label.LABEL_REPEATED),
    )
    entry = request.nested_type.add(name="InputsEntry")
    entry.field.add(name="key", number=1, type=string, label=optional)
    entry.field.add(name="value", number=2, type=msg, label=optional, type_name=".tensorflow.TensorProto")
    entry.options.map_entry = True
    message("PredictLog", ("request", 1, msg, f".{_PACKAGE}.PredictRequest", None))
    message("PredictionLog", ("predict_log", 6, msg, f".{_PACKAGE}.PredictLog", None))
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.PredictionLog"))


def _add_with_dependencies(pool, file_descriptor, added):
    for dependency in file_descriptor.dependencies:
        _add_with_dependencies(pool, dependency, added)
    if file_descriptor.name not in added:
        from google.protobuf import descriptor_pb2

        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.Add(proto)
        added.add(file_descriptor.name)


def prediction_log(model_name, signature_name, inputs):
    """A serialized `PredictionLog` holding one `PredictRequest` of `inputs` (name → array-like)."""
    log = prediction_log_class()()
    request = log.predict_log.request
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        value = np.asarray(value, dtype=object if _is_bytes(value) else None)
        request.inputs[name].ParseFromString(tf.make_tensor_proto(value).SerializeToString())
    return log.SerializeToString()


def _is_bytes(value):
    return isinstance(value, (list, tuple)) and any(isinstance(v, (bytes, str)) for v in value)


def write_requests(version_dir, model_name, requests):
    """Write `requests` (signature name → list of {input name: values}) as the warm-up file; returns its path."""
    directory = os.path.join(version_dir, WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, signature_requests in requests.items():
            for inputs in signature_requests:
                writer.write(prediction_log(model_name, signature_name, inputs))
                count += 1
    if not 0 < count <= 1000:  # TF Serving reads at most 1000 warm-up records
        raise ValueError(f"TF Serving takes 1 to 1000 warm-up requests, got {count}.")
    return path


def read_requests(version_dir):
    """The warm-up requests of a SavedModel version: a list of (model name, signature name, {input: ndarray})."""
    path = os.path.join(version_dir, WARMUP_DIR, WARMUP_FILE)
    cls = prediction_log_class()
    out = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = cls.FromString(record)
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(_tensor_proto(v)) for k, v in request.inputs.items()}
        out.append((request.model_spec.name, request.model_spec.signature_name, inputs))
    return out


def _tensor_proto(message):
    from tensorflow.core.framework import tensor_pb2

    return tensor_pb2.TensorProto.FromString(message.SerializeToString())
