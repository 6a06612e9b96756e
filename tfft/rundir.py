"""The run directory: one run at a time, resumed when interrupted, replaced only when done.

- A lock file beside the directory (`.<name>.lock`, holding the pid and host) keeps a second
  run out: it is refused at once, naming the holder. A lock left by a process that no longer
  exists is taken over.
- A directory holding an interrupted run of the same recipe is resumed; a finished run
  (`metrics.json` written) is never touched without `--overwrite`; a recipe that differs is
  refused, naming the keys that differ.
- `--overwrite` trains beside the old run, in `.<name>.next`, and swaps the two only when
  the new run has finished: a crash, a kill or a bad file mid-run leaves the old results as
  they were (and running the same command again resumes the new run where it stopped).
"""

import json
import os
import shutil
import socket

from tfft.errors import TfftError

RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
# Frozen backbone outputs too large for memory (`tfft.feature_cache`), while the run lasts.
FEATURES = "features"
# What a run writes before its first checkpoint.
STARTED_FILES = {RECIPE_FILE, "recipe.py", "tensorboard", "skipped.txt", FEATURES}
# Recipe values that may differ between the interrupted run and its resumption (the health
# figures change no weight: a run recorded without the key resumes with it).
UNCHECKED = {"output.dir", "source", "output.health"}


def flatten(values, prefix=""):
    """`{"schedule": {"lr": 1e-3}}` as `{"schedule.lr": 1e-3}`."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix == "":
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def recipe_differences(saved, current):
    """Dotted keys whose values differ between two `Recipe.to_dict()` results."""
    a, b = flatten(saved), flatten(current)
    return sorted(k for k in set(a) | set(b) if k not in UNCHECKED and a.get(k) != b.get(k))


def state_of(directory):
    """What `directory` holds: `"empty"` (missing or no files), `"finished"` (a run that
    wrote `metrics.json`), `"interrupted"` (a run with checkpoints and no `metrics.json`), or
    `"started"` (a run that stopped before its first checkpoint: its recipe and logs only),
    or `"other"` (files that are not a tfft run's)."""
    if not os.path.isdir(directory) or not [n for n in os.listdir(directory) if not n.startswith(".")]:
        return "empty"
    if os.path.isfile(os.path.join(directory, METRICS_FILE)):
        return "finished"
    if os.path.isfile(os.path.join(directory, RECIPE_FILE)) and os.path.isdir(os.path.join(directory, CHECKPOINTS)):
        return "interrupted"
    names = {n for n in os.listdir(directory) if not n.startswith(".")}
    if RECIPE_FILE in names and names <= STARTED_FILES | {n for n in names if n.startswith("lr_find")}:
        return "started"
    return "other"


def saved_recipe(directory):
    with open(os.path.join(directory, RECIPE_FILE), encoding="utf-8") as file:
        return json.load(file)


def sibling(directory, suffix):
    parent, name = os.path.split(os.path.abspath(directory))
    return os.path.join(parent, f".{name}.{suffix}")


class RunLock:
    """An exclusive lock on a run directory, held by this process until `release()`.

    Example:
        >>> lock = RunLock("runs/mri").acquire()
        >>> ...
        >>> lock.release()
    """

    def __init__(self, directory):
        self.directory = directory
        self.path = sibling(directory, "lock")
        self.held = False

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise TfftError(
                        f"Run directory {self.directory} is in use by process {holder['pid']} "
                        f"on {holder['host']} (lock {self.path}): wait for it, or pass --out to another directory."
                    ) from None
                os.unlink(self.path)  # stale: its process is gone
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, file)
            self.held = True
            return self
        raise TfftError(f"Cannot take the lock {self.path}: another run keeps creating it.")

    def _holder(self):
        try:
            with open(self.path, encoding="utf-8") as file:
                return json.load(file)
        except (OSError, ValueError):
            return None  # half-written or unreadable: treated as stale

    def release(self):
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False


def _alive(holder):
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell, so respect it
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def swap_in(new, directory):
    """Replace `directory` by the finished run in `new`; the old one is removed last."""
    old = sibling(directory, "old")
    if os.path.isdir(old):
        shutil.rmtree(old)
    if os.path.isdir(directory):
        os.replace(directory, old)
    os.replace(new, directory)
    shutil.rmtree(old, ignore_errors=True)
