"""`fit_resumable` in one process: checkpoints, exact resume after a crash, corrupt-checkpoint fallback, NaN stop."""

import csv
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasmm.distribute import NonFiniteLossError, fit_resumable

EPOCHS, STEPS, BATCH, SAVE_EVERY = 2, 6, 4, 2


class Crash(Exception):
    pass


class CrashAt(keras.callbacks.Callback):
    """Stands in for a kill: raises out of `fit` once the global step reaches `step`."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Crash()


class FirstStep(keras.callbacks.Callback):
    """Records the global step training (re)started from."""

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())


def dense_model(strategy=None, learning_rate=0.01):
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.25),
            keras.layers.Dense(1),
        ])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def numbers(nan_batch=None, shuffle=True):
    x = np.random.default_rng(0).normal(size=(STEPS * BATCH, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    if nan_batch is not None:
        y[nan_batch * BATCH] = np.nan  # a NaN input can vanish in a ReLU; a NaN target reaches the loss
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=1, reshuffle_each_iteration=True)
    return dataset.batch(BATCH)


def fit(model, directory, dataset=None, **kwargs):
    kwargs = {"epochs": EPOCHS, "save_every": SAVE_EVERY, "keep": None, "verbose": 0, **kwargs}
    return fit_resumable(model, dataset or numbers(), directory=str(directory), **kwargs)


def crash(directory, step, strategy=None, callbacks=()):
    with pytest.raises(Crash):
        fit(dense_model(strategy), directory, callbacks=[*callbacks, CrashAt(step)])


def saved_steps(directory):
    state = tf.train.get_checkpoint_state(str(directory))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("uninterrupted")
    model = dense_model()
    history = fit(model, directory)
    return model, history, directory


def test_checkpoints_every_save_every_steps_and_trains_epochs_times_steps(uninterrupted):
    model, history, directory = uninterrupted
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    assert history.epoch == [0, 1]
    assert saved_steps(directory) == [2, 4, 6, 8, 10, 12]


def test_keep_bounds_the_checkpoints_kept(tmp_path):
    fit(dense_model(), tmp_path, epochs=1, save_every=1, keep=2)
    assert saved_steps(tmp_path) == [5, 6]


def test_a_crash_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(uninterrupted, tmp_path):
    log = tmp_path / "log.csv"
    crash(tmp_path, 9, callbacks=[keras.callbacks.CSVLogger(str(log))])  # saved at 8, epoch 0 logged
    assert saved_steps(tmp_path) == [2, 4, 6, 8]
    model, first = dense_model(), FirstStep()
    history = fit(model, tmp_path, callbacks=[first, keras.callbacks.CSVLogger(str(log))])
    assert first.step == 8
    assert history.epoch == [1]
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    assert max_difference(model, uninterrupted[0]) <= 1e-6
    with open(log) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]  # appended, not rewritten


def test_a_finished_run_started_again_returns_at_once(uninterrupted):
    _, _, directory = uninterrupted
    model = dense_model()
    history = fit(model, directory)
    assert history.epoch == [] and history.history == {}
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    assert max_difference(model, uninterrupted[0]) == 0


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(uninterrupted, tmp_path, caplog):
    crash(tmp_path, 5)
    newest = tf.train.latest_checkpoint(str(tmp_path))
    data = newest + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    model, first = dense_model(), FirstStep()
    with caplog.at_level(logging.WARNING, logger="kerasmm.distribute"):
        fit(model, tmp_path, callbacks=[first])
    assert f"Checkpoint {newest} is corrupt" in caplog.text
    assert first.step == 2
    assert os.path.exists(os.path.join(tmp_path, "corrupt", os.path.basename(data)))
    assert saved_steps(tmp_path) == [2, 4, 6, 8, 10, 12]  # the corrupt one dropped from the list, then redone
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    assert max_difference(model, uninterrupted[0]) <= 1e-6


def test_what_a_save_killed_half_way_left_behind_is_ignored_and_removed(uninterrupted, tmp_path):
    crash(tmp_path, 5)
    (tmp_path / "ckpt-6_temp").mkdir()
    (tmp_path / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    (tmp_path / "ckpt-6.index.tempstate123").write_bytes(b"half")
    model = dense_model()
    fit(model, tmp_path)
    assert not [name for name in os.listdir(tmp_path) if "temp" in name]
    assert max_difference(model, uninterrupted[0]) <= 1e-6


def test_resume_under_a_strategy_that_reads_a_batch_ahead(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # Keras builds from one batch before training
    reference = dense_model(strategy)
    fit(reference, tmp_path / "reference")
    crash(tmp_path / "run", 5, strategy)
    model = dense_model(strategy)
    fit(model, tmp_path / "run")
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    assert max_difference(model, reference) <= 1e-6


@pytest.mark.parametrize("nan_batch", [4, 5])  # mid-epoch, and the epoch's last step
def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, nan_batch):
    step = nan_batch + 1
    with pytest.raises(NonFiniteLossError, match=rf"Non-finite loss nan at step {step} \(epoch 1, batch {step} of 6\)"):
        try:
            fit(dense_model(), tmp_path, dataset=numbers(nan_batch=nan_batch, shuffle=False))
        except NonFiniteLossError as e:
            assert e.step == step and e.checkpoint.endswith("ckpt-4")
            assert e.history.epoch == [0]
            raise
    assert saved_steps(tmp_path) == [2, 4]
    restored = dense_model()
    restored.optimizer.build(restored.trainable_variables)
    tf.train.Checkpoint(model_variables=list(restored.variables)).read(
        tf.train.latest_checkpoint(str(tmp_path))).expect_partial()
    assert all(np.isfinite(w).all() for w in restored.get_weights())


def test_non_finite_weights_are_never_saved(tmp_path):
    # An infinite learning rate: the loss of step 1 is finite, the weights it leaves are not.
    message = r"Non-finite weights \(found when saving\) at step 1 .*no checkpoint was written"
    with pytest.raises(NonFiniteLossError, match=message):
        fit(dense_model(learning_rate=float("inf")), tmp_path, save_every=1)
    assert saved_steps(tmp_path) == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"save_every": 0}, r"save_every must be an integer >= 1, got 0"),
        ({"save_every": 2.5}, r"save_every must be an integer >= 1, got 2.5"),
        ({"save_every": True}, r"save_every must be an integer >= 1, got True"),
        ({"keep": 0}, r"keep must be an integer >= 1"),
        ({"epochs": 0}, r"epochs must be an integer >= 1"),
        ({"steps_per_epoch": -3}, r"steps_per_epoch must be an integer >= 1"),
        ({"dataset": np.zeros((8, 4))}, r"dataset must be a tf.data.Dataset, got ndarray"),
        ({"dataset": numbers().filter(lambda x, y: True)}, r"dataset has unknown length: pass steps_per_epoch"),
        ({"dataset": numbers().repeat()}, r"dataset has infinite length: pass steps_per_epoch"),
        ({"batch_size": 8}, r"fit_resumable owns the data and the epoch count; drop batch_size"),
        ({"model": "a model"}, r"model must be a keras.Model, got str"),
        ({"directory": None}, r"directory must be a path, got None"),
    ],
)
def test_bad_arguments_are_clear_value_errors(tmp_path, overrides, message):
    arguments = {"model": dense_model(), "dataset": numbers(), "epochs": 1, "directory": str(tmp_path),
                 **overrides}
    with pytest.raises(ValueError, match=message):
        fit_resumable(**arguments)


def test_an_uncompiled_model_and_an_unwritable_directory_are_clear_value_errors(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"model must be compiled"):
        fit_resumable(model, numbers(), directory=str(tmp_path))
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(ValueError, match=r"Cannot write checkpoints to directory '.*file/run'"):
        fit_resumable(dense_model(), numbers(), directory=str(not_a_directory / "run"))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match=r"Cannot write checkpoints to directory '.*locked'"):
            fit_resumable(dense_model(), numbers(), directory=str(locked))


def test_resuming_with_another_steps_per_epoch_is_a_clear_value_error(tmp_path):
    crash(tmp_path, 3)
    with pytest.raises(ValueError, match=r"written with steps_per_epoch=6, not 3: resume with the same value"):
        fit(dense_model(), tmp_path, steps_per_epoch=3)


def test_a_checkpoint_of_another_format_is_refused_by_name(tmp_path):
    crash(tmp_path, 3)
    # What a kerasmm before checkpoint format 2 wrote: the same objects, no format marker.
    old = tf.train.Checkpoint(step=tf.Variable(0, dtype=tf.int64))
    old.write(str(tmp_path / "ckpt-9"))
    with open(tmp_path / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "ckpt-9"\nall_model_checkpoint_paths: "ckpt-9"\n')
    with pytest.raises(ValueError, match=r"ckpt-9 was written by another kerasmm version \(checkpoint format 1; "
                                         r"this version reads format 2\), so it cannot resume exactly"):
        fit(dense_model(), tmp_path)
