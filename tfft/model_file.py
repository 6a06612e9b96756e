"""What tfft writes beside the Keras model inside `model.keras`: `tfft.json`.

A `.keras` file is a zip archive; Keras reads its own entries and ignores others, so tfft
adds one: the modality, the class names, the backbone's layer groups (each by its first
layer, in order) and its input shape. `tfft.backbones.build_backbone` reads it back when a
fine-tuned model is the backbone of another recipe, so that recipe needs neither
`backbone.groups` nor `backbone.input_size`.

Example:
    >>> read_metadata("runs/mri/model.keras")["class_names"]
    ['glioma', 'meningioma', 'none', 'pituitary']
"""

import json
import zipfile

ENTRY = "tfft.json"
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


def group_patterns(groups):
    """`GroupRules.patterns` that cut a model as `groups` (`[(name, first_layer), ...]`)
    did: each first layer opens its group, the layers after it follow."""
    import re

    return tuple((f"{re.escape(first)}$", name) for name, first in groups)
