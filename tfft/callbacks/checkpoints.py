"""Checkpoints of model weights, optimizer state, random state and run position, verified on load.

A checkpoint is a directory of up to five files:
- `model.weights.h5`: the model's weights in Keras's weights format, without the optimizer
  (which `model.save_weights` would add a second time for a compiled model);
- `adapters.npz`: only when layers carry LoRA adapters (`tfft.adapters`): their pretrained
  kernels and adapters apart, which the weights file holds merged;
- `optimizer.npz`: every optimizer variable (`iterations`, moments, loss-scale state) as an
  array keyed by its index (`"0"`, `"1"`, ...), with the variables' paths under `"paths"`;
- `rng.npz`: the state of every random seed generator in the model (dropout draws from
  them), so a resumed run draws what the interrupted one would have;
- `state.json`: where the run was (stage, step, data position, ...), and the size and
  SHA-256 of every other file, checked before anything is loaded.

It is written into a hidden sibling directory and renamed into place, so a crash leaves
either the previous checkpoint or the new one, never a mix. `CheckpointStore` keeps the
newest full checkpoints (`step-000120/`, ...) for resuming and falls back to an older one
when the newest does not verify; `best/` holds the weights (and no optimizer) of the best
validation so far.
"""

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import time
import warnings

import keras
import numpy as np
from keras.src.saving import saving_lib

from tfft import adapters
from tfft.callbacks.logs import scalar_or_none
from tfft.errors import TfftError
from tfft.evaluation import write_json

WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
RNG_FILE = "rng.npz"
ADAPTERS_FILE = "adapters.npz"
STATE_FILE = "state.json"
_STEP = re.compile(r"step-(\d+)$")


def _backup_path(directory):
    return os.path.join(os.path.dirname(directory), f".{os.path.basename(directory)}.previous")


def _digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


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


def seed_generators(model):
    """Every `keras.random.SeedGenerator` of the model's layers, in a fixed order."""
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", []):
            found.setdefault(id(generator), generator)
    return list(found.values())


def save_checkpoint(directory, model, optimizer, state, include_optimizer=True, extra=None):
    """Saves model weights, optimizer variables, random state and a state dict, atomically.

    Everything is written to a hidden temporary directory next to `directory` which then
    takes its place; if anything fails, the previous checkpoint at `directory` is left
    untouched and the temporary directory is removed. `state.json` records the size and
    SHA-256 of every other file (under `"files"`).

    Args:
        directory: checkpoint directory, e.g. `runs/mri/checkpoints/step-000120`.
        model: the Keras model.
        optimizer: its optimizer; every variable is saved, `iterations` included.
        state: JSON-serialisable dict saved as `state.json` (stage, epoch, step...).
        include_optimizer: False writes the weights alone (for `best/`).
        extra: optional `{file_name: {key: array}}` written as `.npz` files beside the
            others and verified with them (`best/` keeps its validation scores so).

    Example:
        >>> save_checkpoint("runs/mri/checkpoints/step-000120", model, model.optimizer,
        ...                 {"stage_index": 1, "stage_name": "finetune", "step": 120})
    """
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    # Not `tempfile.mkdtemp`: its mode 0700 would stay with the checkpoint after the rename.
    temp = os.path.join(parent, f".{os.path.basename(directory)}.tmp-{secrets.token_hex(6)}")
    os.mkdir(temp)
    try:
        _save_model_weights(model, optimizer, os.path.join(temp, WEIGHTS_FILE))
        raw = adapters.raw_weights(model)
        if raw:
            np.savez(os.path.join(temp, ADAPTERS_FILE), **raw)
        if include_optimizer:
            variables = list(optimizer.variables)
            # `np.asarray` reads Keras variables, mirrored ones included, without the numpy 2
            # DeprecationWarning that `keras.ops.convert_to_numpy` raises on them.
            arrays = {str(index): np.asarray(v) for index, v in enumerate(variables)}
            arrays["paths"] = np.array([v.path for v in variables], dtype=str)
            np.savez(os.path.join(temp, OPTIMIZER_FILE), **arrays)
            generators = seed_generators(model)
            np.savez(os.path.join(temp, RNG_FILE), **{str(i): np.asarray(g.state) for i, g in enumerate(generators)})
        for name, values in (extra or {}).items():
            np.savez(os.path.join(temp, name), **values)
        files = {name: {"bytes": os.path.getsize(os.path.join(temp, name)), "sha256": _digest(os.path.join(temp, name))}
                 for name in sorted(os.listdir(temp))}
        write_json(os.path.join(temp, STATE_FILE), dict(state, files=files))
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


def verify_checkpoint(directory):
    """Read `state.json` and check every file it lists against its size and SHA-256.

    Returns:
        The state dict.

    Raises:
        TfftError: naming the first file that is missing, truncated, changed or unreadable.
    """
    directory = os.path.abspath(os.fspath(directory))
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        raise TfftError(f"The checkpoint directory {directory!r} lacks {STATE_FILE}; it was not written by "
                        "`save_checkpoint`, or only in part.")
    try:
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
    except (OSError, ValueError) as error:
        raise TfftError(f"{path} is unreadable ({type(error).__name__}: {error}).") from None
    files = state.get("files")
    if not isinstance(files, dict) or WEIGHTS_FILE not in files:
        raise TfftError(f"{path} lists no checkpoint files: it was not written by `save_checkpoint`.")
    for name, expected in files.items():
        file_path = os.path.join(directory, name)
        if not os.path.isfile(file_path):
            raise TfftError(f"{file_path} is missing.")
        size = os.path.getsize(file_path)
        if size != expected["bytes"]:
            raise TfftError(f"{file_path} has {size} bytes, {expected['bytes']} were written: it is truncated "
                            "or changed.")
        if _digest(file_path) != expected["sha256"]:
            raise TfftError(f"{file_path} does not match the checksum recorded when it was written.")
    return state


def load_checkpoint(directory, model, optimizer):
    """Restores what `save_checkpoint` wrote, after verifying every file.

    The optimizer must already be built over the same variables, in the same order, as
    the one that was saved (`optimizer.build(model.trainable_variables)` or one training
    step); the number and shapes of its variables are checked before anything is changed.
    A weights-only checkpoint (`best/`) restores the weights and leaves the optimizer.

    Args:
        directory: checkpoint directory.
        model: model with the same architecture as the saved one.
        optimizer: built optimizer whose variables receive the saved values.

    Returns:
        The state dict saved with the checkpoint (without its `"files"` record).

    Example:
        >>> state = load_checkpoint("runs/mri/checkpoints/best", model, model.optimizer)
        >>> state["step"]
        120
    """
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory) and os.path.isdir(_backup_path(directory)):
        # A crash between the two renames of `_swap_in` leaves only the backup.
        directory = _backup_path(directory)
    if not os.path.isdir(directory):
        raise TfftError(f"No checkpoint found. Received: directory={directory!r}")
    state = verify_checkpoint(directory)
    files = state.pop("files")
    variables = list(optimizer.variables)
    saved = None
    if OPTIMIZER_FILE in files:
        with np.load(os.path.join(directory, OPTIMIZER_FILE)) as data:
            saved_paths = [str(path) for path in data["paths"]]
            saved = [data[str(index)] for index in range(len(saved_paths))]
        if len(variables) != len(saved):
            raise TfftError(
                f"The checkpoint holds {len(saved)} optimizer variables but the optimizer has "
                f"{len(variables)}. Build the optimizer over the same trainable variables as the "
                "saved run (`optimizer.build(model.trainable_variables)`) and use the same "
                f"optimizer class. Received: directory={directory!r}"
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
    raw = None
    if ADAPTERS_FILE in files or adapters.has_adapters(model):
        raw = _adapter_arrays(directory, files, model)
    try:
        _load_model_weights(model, optimizer, os.path.join(directory, WEIGHTS_FILE))
    except ValueError as error:
        raise TfftError(
            f"The model does not match the checkpoint's weights: {error} "
            f"Received: directory={directory!r}"
        ) from error
    if raw is not None:
        adapters.restore_raw_weights(model, raw)
    if saved is not None:
        for variable, array in zip(variables, saved):
            variable.assign(array)
    if RNG_FILE in files:
        generators = seed_generators(model)
        with np.load(os.path.join(directory, RNG_FILE)) as data:
            if len(data.files) == len(generators):
                for index, generator in enumerate(generators):
                    generator.state.assign(data[str(index)])
    return state


def _adapter_arrays(directory, files, model):
    """The adapted layers' variables a checkpoint holds, checked against `model` before
    anything is loaded (loading the weights file alone would merge the adapters into the
    kernels and zero them)."""
    if ADAPTERS_FILE not in files:
        raise TfftError(f"The model has LoRA adapters but the checkpoint holds none ({ADAPTERS_FILE} is missing): "
                        f"it was written by a run without lora. Received: directory={directory!r}")
    with np.load(os.path.join(directory, ADAPTERS_FILE)) as data:
        arrays = {name: data[name] for name in data.files}
    mismatch = adapters.raw_weights_mismatch(model, arrays)
    if mismatch:
        raise TfftError(f"{mismatch} Received: directory={directory!r}")
    return arrays


class CheckpointStore:
    """The checkpoints of one run: the newest full ones (`step-NNNNNN/`) and `best/`.

    Args:
        directory: the run's `checkpoints/` folder.
        keep: full checkpoints to keep (None: all); the older ones are removed after each save. Two
            leave one to fall back on when the newest does not verify.

    Example:
        >>> store = CheckpointStore("runs/mri/checkpoints")
        >>> store.save(model, optimizer, {"step": 120, "position": 120})
        >>> state = store.load_latest(model, optimizer)
    """

    def __init__(self, directory, keep=2):
        self.directory = os.fspath(directory)
        self.keep = None if keep is None else max(1, int(keep))

    def remove_steps(self, keep=0):
        """Remove the full checkpoints but the newest `keep`; returns the bytes freed."""
        freed = 0
        for _, path in self.steps()[keep:]:
            freed += sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
            shutil.rmtree(path, ignore_errors=True)
        return freed

    @property
    def best_directory(self):
        return os.path.join(self.directory, "best")

    def steps(self):
        """Full checkpoints on disk, newest first, as `(step, path)`."""
        if not os.path.isdir(self.directory):
            return []
        found = [(int(m.group(1)), os.path.join(self.directory, name))
                 for name in os.listdir(self.directory) if (m := _STEP.match(name))]
        return sorted(found, reverse=True)

    def clean(self):
        """Remove temporary folders a crash left behind; returns how many."""
        if not os.path.isdir(self.directory):
            return 0
        stray = [name for name in os.listdir(self.directory) if ".tmp-" in name or name.endswith(".previous")]
        for name in stray:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        return len(stray)

    def save(self, model, optimizer, state):
        step = int(state["step"])
        save_checkpoint(os.path.join(self.directory, f"step-{step:06d}"), model, optimizer, state)
        if self.keep is not None:
            self.remove_steps(self.keep)

    def save_best(self, model, optimizer, state, arrays=None):
        save_checkpoint(self.best_directory, model, optimizer, state, include_optimizer=False, extra=arrays)

    def load_latest(self, model, optimizer, warn=print):
        """Load the newest checkpoint that verifies, warning in one line about any newer one
        that does not. Returns its state, or None when there is none at all.

        Raises:
            TfftError: there are checkpoints but none verifies.
        """
        candidates = self.steps()
        problems = []
        for _, path in candidates:
            try:
                return load_checkpoint(path, model, optimizer)
            except TfftError as error:
                problems.append(f"{os.path.basename(path)}: {error}")
                if len(problems) < len(candidates):
                    warn(f"warning: checkpoint {path} is damaged ({error}); falling back to the one before it")
        if problems:
            raise TfftError(f"No checkpoint in {self.directory} is whole: {'; '.join(problems)}. Start again "
                            "with --overwrite.")
        return None


class RunCheckpoints(keras.callbacks.Callback):
    """Saves a full checkpoint at every validation and, in between, once `every_steps` steps
    or `every_seconds` seconds have passed since the last one; `best/` when the monitored
    value improves.

    `state_fn()` returns the run's position (it must include `step`); the callback adds
    `monitor`, `monitor_value`, `best_value` and the epoch's `logs`. `healthy()` is asked
    before each save: a run whose weights went non-finite writes nothing more.

    Args:
        store: a `CheckpointStore`.
        monitor: key of the epoch logs to compare, e.g. `"val_loss"`.
        mode: `"min"` when lower is better, `"max"` when higher is.
        state_fn: callable returning the run's state as a JSON-ready dict.
        every_steps: steps between checkpoints inside an epoch (None: only at validations).
        every_seconds: seconds between checkpoints inside an epoch (None: no time limit).
        healthy: callable returning False to skip saving (non-finite weights).
        on_best: callable run when `best/` is about to be written; it may return arrays to
            keep beside the weights (`{file_name: {key: array}}`: the validation scores).
        skip: callable returning True while the run stops on a signal or a NaN: the epoch
            end that follows is then not a validation and writes nothing.
    """

    def __init__(self, store, monitor="val_loss", mode="min", state_fn=None, every_steps=None, every_seconds=None,
                 healthy=None, on_best=None, skip=None):
        super().__init__()
        if mode not in ("min", "max"):
            raise TfftError(
                "`mode` must be 'min' (lower is better) or 'max' (higher is better). "
                f"Received: mode={mode!r}"
            )
        self.store = store
        self.monitor = monitor
        self.mode = mode
        self.state_fn = state_fn or (lambda: {})
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.healthy = healthy or (lambda: True)
        self.on_best = on_best
        self.skip = skip or (lambda: False)
        self.best_value = None
        self.best_info = None  # {"step", "position", "value"} of the best validation
        self._warned_missing = False
        self._last_step = None
        self._last_time = time.monotonic()

    def _improves(self, value):
        if value is None or math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def _state(self, logs):
        state = dict(self.state_fn())
        state.setdefault("step", int(np.asarray(self.model.optimizer.iterations)))
        state.update(monitor=self.monitor, best_value=self.best_value,
                     logs={key: v for key, v in ((k, scalar_or_none(v)) for k, v in (logs or {}).items())
                           if v is not None})
        return state

    def save_now(self, logs=None):
        """Write a full checkpoint of the run as it is now (also used on SIGTERM)."""
        if not self.healthy():
            return False
        state = self._state(logs)
        if not self.store.steps() or self.store.steps()[0][0] != state["step"]:
            self.store.save(self.model, self.model.optimizer, state)
            self._last_step = state["step"]
        self._last_time = time.monotonic()
        return True

    def on_train_begin(self, logs=None):
        if self._last_step is None:  # counted from where this process starts, resumed or not
            self._last_step = int(np.asarray(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        if self.skip():
            return
        step = int(np.asarray(self.model.optimizer.iterations))
        due = self.every_steps and step - self._last_step >= self.every_steps
        late = self.every_seconds and time.monotonic() - self._last_time >= self.every_seconds
        if due or late:
            self.save_now(logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.skip() or not self.healthy():
            return  # a stop (signal, non-finite loss) ends the epoch early, without validation
        # A pairs stage (`tfft.pairs`) has no trained head yet: its validations rank nothing,
        # whatever the monitor (its `loss` is the pair loss).
        pairs = "val_pair_loss" in logs
        value = None if pairs else scalar_or_none(logs.get(self.monitor))
        if value is None and not self._warned_missing and not pairs:
            self._warned_missing = True
            warnings.warn(
                f"The checkpoints monitor {self.monitor!r}, which is not in the epoch logs, so "
                f"best/ is never written. Available keys: {sorted(logs)}",
                stacklevel=2,
            )
        improved = self._improves(value)
        state = self._state(logs)
        if improved:
            self.best_value = value
            self.best_info = {"step": state["step"], "position": state.get("position"), "value": value}
            state = self._state(logs)  # now with the new best in it
        state["monitor_value"] = value
        self.store.save(self.model, self.model.optimizer, state)
        self._last_step, self._last_time = state["step"], time.monotonic()
        if improved:
            arrays = self.on_best(state) if self.on_best is not None else None
            self.store.save_best(self.model, self.model.optimizer, state, arrays)


