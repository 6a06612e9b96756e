"""Generated data sets, written atomically once and reused while their parameters hold.

The synthetic data generators (`synthetic.py`, `speech.py`, `synthetic_text.py`) write
their sets through these helpers. A `.complete` marker in the set's folder records, as
JSON, the parameters the set was made with:

- `is_current` says whether a folder already holds a set made with the given parameters,
  so that a second call returns at once;
- `check_folder` refuses a file, or a non-empty folder that holds no marker (files the
  generator did not write are never overwritten);
- `write_folder` writes a whole set into a hidden temporary folder beside the target and
  renames it into place, so an interrupted run never leaves a partial set;
- `replace_file` writes one file through a temporary name beside it.
"""

import json
import os
import shutil
import tempfile

from tfft.errors import DataError

MARKER = ".complete"


def read_marker(path):
    """The JSON held by the marker file `path`, or None if it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_current(directory, params):
    """Whether `directory` holds a set whose marker records exactly `params`."""
    return read_marker(os.path.join(os.path.abspath(directory), MARKER)) == params


def check_not_file(directory, purpose):
    """Raise if `directory` is a file; `purpose` names what the folder is for."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise DataError(
            f"{directory} is a file; pass a folder path for {purpose}. "
            f"Received: directory='{directory}'"
        )


def check_folder(directory, purpose, kind):
    """Raise unless `directory` is new, empty, or holds a set with a marker.

    `purpose` names what the folder is for ("the keyword set") and `kind` what a set is
    ("a keyword set"), for the messages.
    """
    check_not_file(directory, purpose)
    target = os.path.abspath(directory)
    if os.path.isdir(target) and os.listdir(target) and not os.path.exists(
        os.path.join(target, MARKER)
    ):
        raise DataError(
            f"{directory} already holds files that are not {kind}; pass an "
            f"empty or new folder. Received: directory='{directory}'"
        )


def write_folder(directory, params, write):
    """Write a set with `write(staging)` and put it in place of `directory`, atomically.

    `write` fills the empty folder `staging`; the marker recording `params` is added last.
    The staged set then replaces `directory`: an empty folder is removed first, and a
    previous set is renamed aside and deleted. If another process finished the same set
    first, its set is kept. On any error the staging folder is removed and `directory` is
    left as it was.
    """
    target = os.path.abspath(directory)
    marker = os.path.join(target, MARKER)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent)
    try:
        write(staging)
        with open(os.path.join(staging, MARKER), "w") as f:
            json.dump(params, f)

        if os.path.isdir(target):
            if read_marker(marker) == params:  # another process finished first
                shutil.rmtree(staging)
                return
            if os.listdir(target):
                retired = staging[: -len(".partial")] + ".old"
                os.rename(target, retired)
                os.rename(staging, target)
                shutil.rmtree(retired, ignore_errors=True)
                return
            os.rmdir(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_file(path, write):
    """Write a text file through a temporary name beside it, so readers never see half
    a file. `write(f)` writes to the open file (UTF-8, no newline translation)."""
    folder, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
