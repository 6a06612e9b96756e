"""Checkpoints of model weights, optimizer state and stage position, written atomically.

A checkpoint is a directory of three files:
- `model.weights.h5`: the model's weights in Keras's weights format, without the optimizer
  (which `model.save_weights` would add a second time for a compiled model);
- `optimizer.npz`: every optimizer variable (including `iterations` and, for a constant
  rate, `learning_rate`) as an array keyed by its index (`"0"`, `"1"`, ...), with the
  variables' paths under `"paths"`;
- `state.json`: where the run was (stage, epoch, step, monitored value...).

It is written into a hidden sibling directory and renamed into place, so a crash leaves
either the previous checkpoint or the new one, never a mix.
"""

import json
import math
import os
import secrets
import shutil
import warnings

import keras
import numpy as np
from keras.src.saving import saving_lib

from tfft.callbacks.logs import scalar_or_none
from tfft.errors import TfftError
from tfft.evaluation import write_json

WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"
_CHECKPOINT_FILES = (WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE)


def _backup_path(directory):
    return os.path.join(os.path.dirname(directory), f".{os.path.basename(directory)}.previous")


def _fsync_files(directory):
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as file:
            os.fsync(file.fileno())


def _swap_in(temp, directory):
    # Two renames, because a directory cannot replace a non-empty one. At every moment a
    # complete checkpoint exists at `directory` or at its backup path; `load_checkpoint`
    # falls back to the backup if a crash happened between the renames.
    backup = _backup_path(directory)
    if os.path.isdir(directory):
        if os.path.isdir(backup):
            shutil.rmtree(backup)
        os.replace(directory, backup)
    os.replace(temp, directory)
    shutil.rmtree(backup, ignore_errors=True)


def save_checkpoint(directory, model, optimizer, state):
    """Saves model weights, optimizer variables and a state dict, atomically.

    Everything is written to a hidden temporary directory next to `directory` which then
    takes its place; if anything fails, the previous checkpoint at `directory` is left
    untouched and the temporary directory is removed.

    Args:
        directory: checkpoint directory, e.g. `runs/mri/checkpoints/last`.
        model: the Keras model.
        optimizer: its optimizer; every variable is saved, `iterations` included.
        state: JSON-serialisable dict saved as `state.json` (stage, epoch, step...).

    Example:
        >>> save_checkpoint("runs/mri/checkpoints/last", model, model.optimizer,
        ...                 {"stage_index": 1, "stage_name": "unfreeze_top", "epoch": 4})
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    # Not `tempfile.mkdtemp`: its mode 0700 would stay with the checkpoint after the rename.
    temp = os.path.join(parent, f".{os.path.basename(directory)}.tmp-{secrets.token_hex(6)}")
    os.mkdir(temp)
    try:
        _save_model_weights(model, optimizer, os.path.join(temp, WEIGHTS_FILE))
        variables = list(optimizer.variables)
        # `np.asarray` reads Keras variables, mirrored ones included, without the numpy 2
        # DeprecationWarning that `keras.ops.convert_to_numpy` raises on them.
        arrays = {str(index): np.asarray(v) for index, v in enumerate(variables)}
        arrays["paths"] = np.array([v.path for v in variables], dtype=str)
        np.savez(os.path.join(temp, OPTIMIZER_FILE), **arrays)
        write_json(os.path.join(temp, STATE_FILE), state)
        _fsync_files(temp)
        _swap_in(temp, directory)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _save_model_weights(model, optimizer, path):
    # `model.save_weights` stores a compiled model's optimizer too: for Adam that triples
    # the file, and `optimizer.npz` holds it already. Keras has no public way to skip it.
    saving_lib.save_weights_only(model, path, objects_to_skip=_optimizers(optimizer))


def _load_model_weights(model, optimizer, path):
    saving_lib.load_weights_only(model, path, objects_to_skip=_optimizers(optimizer))


def _optimizers(optimizer):
    # A loss-scale wrapper holds the real optimizer inside.
    inner = getattr(optimizer, "inner_optimizer", None)
    return [optimizer] + ([inner] if inner is not None else [])


def _describe(shape):
    return str(tuple(int(dim) for dim in shape))


def load_checkpoint(directory, model, optimizer):
    """Restores model weights and optimizer variables saved by `save_checkpoint`.

    The optimizer must already be built over the same variables, in the same order, as
    the one that was saved (`optimizer.build(model.trainable_variables)` or one training
    step); the number and shapes of its variables are checked before anything is changed.

    Args:
        directory: checkpoint directory.
        model: model with the same architecture as the saved one.
        optimizer: built optimizer whose variables receive the saved values.

    Returns:
        The state dict saved with the checkpoint.

    Example:
        >>> state = load_checkpoint("runs/mri/checkpoints/best", model, model.optimizer)
        >>> state["epoch"], state["step"]
        (4, 120)
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory) and os.path.isdir(_backup_path(directory)):
        # A crash between the two renames of `_swap_in` leaves only the backup.
        directory = _backup_path(directory)
    if not os.path.isdir(directory):
        raise TfftError(f"No checkpoint found. Received: directory={directory!r}")
    missing = [
        name for name in _CHECKPOINT_FILES if not os.path.isfile(os.path.join(directory, name))
    ]
    if missing:
        raise TfftError(
            f"The checkpoint directory {directory!r} lacks {missing}; it was not written by "
            "`save_checkpoint`."
        )

    with np.load(os.path.join(directory, OPTIMIZER_FILE)) as data:
        saved_paths = [str(path) for path in data["paths"]]
        saved = [data[str(index)] for index in range(len(saved_paths))]
    variables = list(optimizer.variables)
    if len(variables) != len(saved):
        raise TfftError(
            f"The checkpoint holds {len(saved)} optimizer variables but the optimizer has "
            f"{len(variables)}. Build the optimizer over the same trainable variables as the "
            "saved run (`optimizer.build(model.trainable_variables)`) and use the same "
            f"optimizer class and learning-rate kind. Received: directory={directory!r}"
        )
    mismatches = [
        f"{saved_path} {_describe(array.shape)} vs {variable.path} {_describe(variable.shape)}"
        for saved_path, array, variable in zip(saved_paths, saved, variables)
        if tuple(array.shape) != tuple(variable.shape)
    ]
    if mismatches:
        raise TfftError(
            f"{len(mismatches)} optimizer variables differ in shape from the checkpoint "
            f"(saved vs current): {'; '.join(mismatches[:3])}. The model or the optimizer's "
            f"variable order differs from the saved run. Received: directory={directory!r}"
        )

    try:
        _load_model_weights(model, optimizer, os.path.join(directory, WEIGHTS_FILE))
    except ValueError as error:
        raise TfftError(
            f"The model does not match the checkpoint's weights: {error} "
            f"Received: directory={directory!r}"
        ) from error
    for variable, array in zip(variables, saved):
        variable.assign(array)
    with open(os.path.join(directory, STATE_FILE), encoding="utf-8") as file:
        return json.load(file)


class StageCheckpoint(keras.callbacks.Callback):
    """Saves `last` after every epoch and `best` when the monitored value improves.

    Use one instance for the whole run and pass it to every stage's `fit`: `best_value`
    carries over, so `best` is the best epoch of the run, not of the last stage. Each
    `state.json` records `epoch` (epochs finished over the run), `step` (optimizer
    iterations), `monitor`, `monitor_value`, `best_value`, the epoch's `logs`, and whatever
    `state_fn()` returns (those keys yield to the ones above). An epoch whose logs lack
    the monitored key (or where it is NaN) still updates `last` but never `best`.

    Args:
        directory: where `last/` and `best/` are written.
        monitor: key of the epoch logs to compare, e.g. `"val_loss"`, `"val_accuracy"`.
        mode: `"min"` when lower is better (losses), `"max"` when higher is (accuracy).
        state_fn: optional callable returning a JSON-serialisable dict describing where
            the run is, e.g. `{"stage_index": 1, "stage": "unfreeze_top"}`.

    Example:
        >>> checkpoints = StageCheckpoint("runs/mri/checkpoints", monitor="val_accuracy",
        ...                               mode="max", state_fn=lambda: {"stage": stage.name})
        >>> model.fit(train, validation_data=val, epochs=3, callbacks=[checkpoints])
        >>> checkpoints.best_value
        0.91
    """

    def __init__(self, directory, monitor="val_loss", mode="min", state_fn=None):
        super().__init__()
        if mode not in ("min", "max"):
            raise TfftError(
                "`mode` must be 'min' (lower is better) or 'max' (higher is better). "
                f"Received: mode={mode!r}"
            )
        if state_fn is not None and not callable(state_fn):
            raise TfftError(
                f"`state_fn` must be a callable returning a dict. Received: state_fn={state_fn!r}"
            )
        self.directory = os.fspath(directory)
        self.monitor = monitor
        self.mode = mode
        self.state_fn = state_fn
        self.best_value = None
        self._warned_missing = False

    @property
    def last_directory(self):
        return os.path.join(self.directory, "last")

    @property
    def best_directory(self):
        return os.path.join(self.directory, "best")

    def _improves(self, value):
        if value is None or math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = scalar_or_none(logs.get(self.monitor))
        if value is None and not self._warned_missing:
            self._warned_missing = True
            warnings.warn(
                f"StageCheckpoint monitors {self.monitor!r}, which is not in the epoch logs, so "
                f"only `last` is saved. Available keys: {sorted(logs)}",
                stacklevel=2,
            )
        improved = self._improves(value)
        if improved:
            self.best_value = value
        scalars = {key: scalar_or_none(v) for key, v in logs.items()}
        state = dict(self.state_fn() if self.state_fn is not None else {})
        state.update(
            epoch=int(epoch) + 1,
            step=int(np.asarray(self.model.optimizer.iterations)),
            monitor=self.monitor,
            monitor_value=value,
            best_value=self.best_value,
            logs={key: v for key, v in scalars.items() if v is not None},
        )
        save_checkpoint(self.last_directory, self.model, self.model.optimizer, state)
        if improved:
            save_checkpoint(self.best_directory, self.model, self.model.optimizer, state)
