"""Run as a script: `kerasmm train ...`, SIGKILLing itself at a chosen point, for a test to resume it.

`python kill_train.py train RECIPE --out DIR ...` is `kerasmm train` with one more callback, set by the
environment: `KILL_BEFORE_STEP=n` kills the process as the n-th optimizer step is about to run;
`KILL_AT_EPOCH_END=e` kills it when epoch e (1-based) has run its last step, before that epoch's
checkpoint is written. Without either it is plain `kerasmm train`.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from kerasmm.cli import main, train  # noqa: E402


class Killer(keras.callbacks.Callback):
    def __init__(self, before_step, at_epoch_end):
        super().__init__()
        self.before_step = before_step
        self.at_epoch_end = at_epoch_end

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.before_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch_end:
            os.kill(os.getpid(), signal.SIGKILL)


def with_killer(callbacks_of):
    before_step = int(os.environ.get("KILL_BEFORE_STEP", 0))
    at_epoch_end = int(os.environ.get("KILL_AT_EPOCH_END", 0))
    # Among the user callbacks, so before fit_resumable's checkpointer in each hook.
    return lambda out: [*callbacks_of(out), Killer(before_step, at_epoch_end)]


if __name__ == "__main__":
    train.epoch_callbacks = with_killer(train.epoch_callbacks)
    sys.exit(main(sys.argv[1:]))
