"""What tfft writes beside the Keras model inside `model.keras`: `tfft.json`.

A `.keras` file is a zip archive; Keras reads its own entries and ignores others, so tfft
adds one: the modality, the class names, the backbone's layer groups (each by its first
layer, in order) and its input shape. Files a modality needs to turn raw inputs into the
model's inputs (a text encoder's tokenizer and vocabulary) go under `tfft/` in the same
archive (`write_assets`, `extracted_assets`). `tfft.backbones.build_backbone` reads it back when a
fine-tuned model is the backbone of another recipe, so that recipe needs neither
`backbone.groups` nor `backbone.input_size`.

Example:
    >>> read_metadata("runs/mri/model.keras")["class_names"]
    ['glioma', 'meningioma', 'none', 'pituitary']
"""

import contextlib
import json
import os
import tempfile
import zipfile

ENTRY = "tfft.json"
ASSETS = "tfft/"
FORMAT = 1


def write_metadata(path, metadata):
    """Add `metadata` (a JSON-able dict) to the `.keras` archive at `path` as `tfft.json`."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        if ENTRY in archive.namelist():
            raise ValueError(f"{path} already holds {ENTRY}")
        archive.writestr(ENTRY, json.dumps(dict(metadata, format=FORMAT), indent=2, sort_keys=True))


def read_metadata(path):
    """The `tfft.json` of a `.keras` file, or None for a file tfft did not write."""
    try:
        with zipfile.ZipFile(path) as archive:
            if ENTRY not in archive.namelist():
                return None
            return json.loads(archive.read(ENTRY))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


def write_assets(path, directory):
    """Add every file under `directory` to the `.keras` archive at `path`, under `tfft/`."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(directory):
            for name in sorted(files):
                full = os.path.join(root, name)
                archive.write(full, ASSETS + os.path.relpath(full, directory).replace(os.sep, "/"))


@contextlib.contextmanager
def extracted_assets(path, folder=""):
    """A temporary directory holding the `tfft/<folder>` files of the `.keras` file at
    `path` (removed on exit), or None when it holds none."""
    prefix = ASSETS + (folder.strip("/") + "/" if folder else "")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile):
        yield None
        return
    with archive, tempfile.TemporaryDirectory() as directory:
        names = [n for n in archive.namelist()
                 if n.startswith(prefix) and not n.endswith("/") and ".." not in n.split("/")]
        if not names:
            yield None
            return
        for name in names:
            target = os.path.join(directory, *name[len(prefix):].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as file:
                file.write(archive.read(name))
        yield directory


def group_patterns(groups):
    """`GroupRules.patterns` that cut a model as `groups` (`[(name, first_layer), ...]`)
    did: each first layer opens its group, the layers after it follow."""
    import re

    return tuple((f"{re.escape(first)}$", name) for name, first in groups)
