"""Warm-up records: TF Serving's PredictionLog wire format, checked by decoding the bytes by hand."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from kerasmm.export import warmup


def read_varint(data, position):
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def fields(data):
    """{field number: [length-delimited payloads]} of a message (every field here is one)."""
    out, position = {}, 0
    while position < len(data):
        key, position = read_varint(data, position)
        assert key & 7 == 2, f"field {key >> 3} is not length-delimited"
        length, position = read_varint(data, position)
        out.setdefault(key >> 3, []).append(data[position:position + length])
        position += length
    return out


def test_a_record_has_the_field_numbers_of_tensorflow_serving_protos():
    images = [b"\xff\xd8\xff fake jpeg", b"\x89PNG\r\n\x1a\n fake png"]
    record = warmup.prediction_log("captioner", "serving_default", {"image_bytes": images})
    predict_log = fields(record)[6][0]  # PredictionLog.predict_log = 6
    request = fields(predict_log)[1][0]  # PredictLog.request = 1
    request_fields = fields(request)
    model_spec = fields(request_fields[1][0])  # PredictRequest.model_spec = 1
    assert model_spec[1] == [b"captioner"]  # ModelSpec.name = 1
    assert model_spec[3] == [b"serving_default"]  # ModelSpec.signature_name = 3
    entry = fields(request_fields[2][0])  # PredictRequest.inputs = 2 (map entry: key = 1, value = 2)
    assert entry[1] == [b"image_bytes"]
    tensor = tensor_pb2.TensorProto.FromString(entry[2][0])
    assert tensor.dtype == tf.string.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [2]
    assert list(tensor.string_val) == images


def test_written_requests_read_back(tmp_path):
    requests = {
        "serving_default": [{"image_bytes": [b"a"], "text": [b"a red circle"]},
                            {"image_bytes": [b"a", b"b"], "text": [b"x", b"y"]}],
        "encode_text": [{"text": [b"a blue square"]}],
    }
    path = warmup.write_requests(str(tmp_path), "dual", requests)
    assert path == str(tmp_path / "assets.extra" / "tf_serving_warmup_requests")
    records = warmup.read_requests(str(tmp_path))
    assert [(name, signature) for name, signature, _ in records] == [
        ("dual", "serving_default"), ("dual", "serving_default"), ("dual", "encode_text")]
    np.testing.assert_array_equal(records[1][2]["text"], np.array([b"x", b"y"], dtype=object))
    assert records[2][2]["text"].dtype == object and records[2][2]["text"].shape == (1,)


def test_tensorflow_serving_takes_at_most_1000_warmup_requests(tmp_path):
    with pytest.raises(ValueError, match="1 to 1000 warm-up requests"):
        warmup.write_requests(str(tmp_path), "m", {"serving_default": [{"text": [b"a"]}] * 1001})
