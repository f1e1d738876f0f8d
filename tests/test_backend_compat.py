"""Canaries: one per item of kerasmm/backend_compat.py. A Keras or TensorFlow upgrade that renames or
removes what an item relies on fails here, by name, before it breaks users quietly."""

import inspect
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasmm import backend_compat
from kerasmm.distribute.owned_input import OwnedBatches, OwnedBatchesAdapter


def test_fit_takes_a_data_adapter_in_place_of_data():
    batches = OwnedBatches(tf.data.Dataset.from_tensor_slices((np.ones((8, 2), "float32"), np.zeros((8, 1)))).batch(2),
                           tf.distribute.get_strategy())
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(OwnedBatchesAdapter(batches), steps_per_epoch=3, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    assert int(batches.position.batches) == 3


def test_print_msg_writes_a_line(capsys):
    backend_compat.print_msg("resumed from ckpt-3")
    assert "resumed from ckpt-3" in capsys.readouterr().out


def test_checkpoint_list_is_rewritten_as_the_manager_writes_it(tmp_path):
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), max_to_keep=5)
    paths = [manager.save() for _ in range(3)]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    stamps = list(state.all_model_checkpoint_timestamps)
    backend_compat.update_checkpoint_list(str(tmp_path), paths[1], paths[:2], stamps[:2],
                                          state.last_preserved_timestamp)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert list(state.all_model_checkpoint_paths) == paths[:2] and state.model_checkpoint_path == paths[1]
    assert list(state.all_model_checkpoint_timestamps) == stamps[:2]


def test_mirrored_strategies_still_answer_whether_they_span_workers():
    from tensorflow.python.distribute.collective_all_reduce_strategy import CollectiveAllReduceExtended

    assert callable(getattr(CollectiveAllReduceExtended, "_in_multi_worker_mode", None))
    assert not backend_compat.in_multi_worker_mode(tf.distribute.get_strategy())


def test_keras_still_has_the_build_hook_the_multi_worker_fix_overrides():
    hook = getattr(keras.Model, "_maybe_symbolic_build", None)
    assert callable(hook), "keras.Model._maybe_symbolic_build is gone: revisit MultiWorkerFitFix (keras#20585)"
    assert {"iterator", "data_batch"} <= set(inspect.signature(hook).parameters)
    for step in ("train_step", "test_step"):
        assert callable(getattr(keras.Model, step))
    from keras.src.backend.tensorflow import trainer  # whose per-replica log reduce the fix feeds

    assert callable(getattr(trainer, "reduce_per_replica", None))


def test_flatten_layers_reaches_nested_sublayers():
    inner = keras.Sequential([keras.layers.Dense(2, name="deep")], name="inner")
    outer = keras.Sequential([keras.Input((2,)), inner], name="outer")
    names = [layer.name for layer in backend_compat.flatten_layers(outer)]
    assert names[0] == "outer" and "inner" in names and "deep" in names
    assert "deep" not in [layer.name for layer in backend_compat.flatten_layers(outer, recursive=False)]


def test_a_presets_task_class_is_read_from_its_task_config(tmp_path):
    import kerasmm

    model = kerasmm.zoo.get("tiny_generative_vqa")
    model.save_to_preset(str(tmp_path / "task"))
    model.backbone.save_to_preset(str(tmp_path / "backbone_only"))
    assert backend_compat.preset_task_class(str(tmp_path / "task")) is type(model)
    assert backend_compat.preset_task_class(str(tmp_path / "backbone_only")) is None


def _op_types(function):
    graph = tf.function(function).get_concrete_function(tf.TensorSpec([2, 4], tf.float32)).graph
    return {op.type for op in graph.get_operations()}


def _update(x):
    return keras.ops.slice_update(x, [0, 1], tf.ones([2, 2]))


def test_portable_slice_updates_apply_in_the_block_and_thread_only():
    assert "XlaDynamicUpdateSlice" in _op_types(_update)
    seen_elsewhere = []
    with backend_compat.portable_slice_updates():
        inside = _op_types(_update)
        other = threading.Thread(target=lambda: seen_elsewhere.append(_op_types(_update)))
        other.start()
        other.join()
    assert "TensorStridedSliceUpdate" in inside and "XlaDynamicUpdateSlice" not in inside
    assert "XlaDynamicUpdateSlice" in seen_elsewhere[0]  # another thread keeps Keras' op
    assert "XlaDynamicUpdateSlice" in _op_types(_update)  # and so does this one after the block
    with backend_compat.portable_slice_updates():
        np.testing.assert_array_equal(_update(tf.zeros([2, 4])), [[0, 1, 1, 0], [0, 1, 1, 0]])


def test_portable_slice_updates_fail_loudly_without_the_keras_function(monkeypatch):
    from keras.src.backend.tensorflow import core

    monkeypatch.setattr(core, "slice_update", None)
    with pytest.raises(RuntimeError, match="cannot make exported graphs portable"):
        with backend_compat.portable_slice_updates():
            pass
