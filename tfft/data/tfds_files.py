"""TensorFlow Datasets for modalities that read files: a TFDS split written once as a
class-per-folder tree in tfft's cache, then read by the modality's own folder pipeline.

Images keep the bytes TFDS stores (JPEG for `tf_flowers`, no re-encoding); recordings are
written as WAV at the data set's sample rate (16-bit PCM for integer audio, as
`speech_commands` stores it). The folder pipeline then gives a TFDS source everything a
folder has: the check of every file, caching, augmentation, the held-out fold, and
evaluation and misclassified examples named by file. A split is written to a staging
folder and renamed when whole, so an interrupted write is started again, never half read.

    ~/.cache/tfft/tfds/tf_flowers-3.0.1/train/daisy/000017.jpg

Example:
    >>> tfds_folders("tf_flowers", ("train", None), feature="Image", write=write_image)
    {'path': '~/.cache/tfft/tfds/tf_flowers-3.0.1/train', 'validation_path': None}
"""

import difflib
import io
import os
import re
import shutil

from tfft.errors import DataError

_MAGIC = ((b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def tfds_folders(name, splits, feature, write, verbose=0):
    """Write the TFDS data set `name`'s splits as class folders; return the sources.

    Args:
        name: a TFDS name, with a config or version if wanted (`"tf_flowers"`).
        splits: `(train_split, validation_split)`; a validation split of None leaves the
            validation to `data.validation_split` of the training split.
        feature: the TFDS feature class the modality reads (`"Image"`, `"Audio"`).
        write: `write(value, feature, stem) -> path`: one example's value to a file at
            `stem` plus the extension it chooses.

    Returns:
        `{"path": train folder, "validation_path": validation folder or None}`.

    Raises:
        DataError: an unknown name (with close names), a missing split (with the splits
            there are), no feature of that kind or no class label.
    """
    import tensorflow_datasets as tfds

    from tfft.data.build import cache_dir

    builder = _builder(tfds, name)
    info = builder.info
    value_key = _feature_key(name, info.features, feature)
    label_key, class_names = _label(name, info.features)
    root = os.path.join(cache_dir(), "tfds", f"{_safe(info.name)}-{info.version}")
    folders = {}
    for role, split in zip(("path", "validation_path"), splits):
        if split is None:
            folders[role] = None
            continue
        _check_split(name, info, split)
        folder = os.path.join(root, _safe(split))
        if not os.path.isfile(os.path.join(folder, ".complete")):
            if verbose:
                print(f"writing TFDS {name} split '{split}' as class folders in {folder}", flush=True)
            _write_split(tfds, name, split, value_key, label_key, class_names, info.features[value_key], write, folder)
        folders[role] = folder
    return folders


def write_image(value, feature, stem):
    """Encoded image bytes as TFDS stores them, under their own extension (decoded and
    written as PNG when the format is none the pipeline reads)."""
    data = bytes(value)
    extension = next((ext for magic, ext in _MAGIC if data.startswith(magic)), None)
    if extension is None:
        import tensorflow as tf

        data = tf.io.encode_png(tf.io.decode_image(data, channels=3, expand_animations=False)).numpy()
        extension = ".png"
    with open(stem + extension, "wb") as file:
        file.write(data)
    return stem + extension


def write_audio(value, feature, stem):
    """A decoded TFDS recording as WAV at the feature's sample rate (16-bit PCM for
    integer samples, 32-bit float otherwise)."""
    import numpy as np
    import soundfile

    samples = np.asarray(value)
    rate = getattr(feature, "sample_rate", None)
    if not rate:
        raise DataError(f"The TFDS audio feature has no sample rate; tfft cannot write it as WAV. Received: {feature}")
    subtype = "PCM_16" if samples.dtype == np.int16 else "PCM_32" if samples.dtype == np.int32 else "FLOAT"
    if subtype == "FLOAT":
        samples = samples.astype("float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, int(rate), subtype=subtype, format="WAV")
    with open(stem + ".wav", "wb") as file:
        file.write(buffer.getvalue())
    return stem + ".wav"


def _builder(tfds, name):
    try:
        return tfds.builder(name)
    except tfds.core.registered.DatasetNotFoundError:
        base = name.split("/")[0].split(":")[0]
        close = difflib.get_close_matches(base, tfds.list_builders(), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise DataError(f"TensorFlow Datasets has no dataset named '{name}'; check the name with "
                        f"`tfds.list_builders()` or the catalog at https://www.tensorflow.org/datasets/catalog."
                        f"{hint} Received: tfds='{name}'") from None


def _feature_key(name, features, kind):
    keys = [key for key, value in features.items() if type(value).__name__ == kind]
    if len(keys) != 1:
        raise DataError(f"TFDS dataset '{name}' has {'no' if not keys else 'more than one'} {kind} feature; tfft reads "
                        f"data sets with one. Received: features={sorted(features)}")
    return keys[0]


def _label(name, features):
    labels = [key for key, value in features.items() if type(value).__name__ == "ClassLabel"]
    key = "label" if "label" in labels else labels[0] if len(labels) == 1 else None
    if key is None:
        raise DataError(f"TFDS dataset '{name}' has {'no' if not labels else 'several'} ClassLabel features and none "
                        f"named 'label'; tfft needs one class per example. Received: features={sorted(features)}")
    return key, list(features[key].names)


def _check_split(name, info, split):
    splits = sorted(info.splits.keys()) if info.splits else []
    base = re.split(r"[\[+(]", split)[0]
    if splits and base not in splits:
        raise DataError(f"TFDS dataset '{name}' has no split '{base}'; its splits: {splits}. Set data.tfds_split="
                        f"['{splits[0]}', None] to hold out data.validation_split of the training split. "
                        f"Received: data.tfds_split split '{split}'")


def _write_split(tfds, name, split, value_key, label_key, class_names, feature, write, folder):
    staging = folder + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    decoders = {value_key: tfds.decode.SkipDecoding()} if type(feature).__name__ == "Image" else None
    try:
        dataset = tfds.load(name, split=split, decoders=decoders)
    except (ValueError, KeyError, OSError, AssertionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"Cannot load TFDS dataset '{name}' split '{split}': {first}. "
                        f"Received: tfds='{name}', split='{split}'") from None
    count = 0
    for index, example in enumerate(tfds.as_numpy(dataset)):
        label = int(example[label_key])
        if not 0 <= label < len(class_names):
            raise DataError(f"TFDS dataset '{name}' split '{split}', example {index}: label {label} is not a class "
                            f"index (the split may be unlabelled); use a labelled split. Received: classes={class_names}")
        directory = os.path.join(staging, _safe(class_names[label]))
        os.makedirs(directory, exist_ok=True)
        write(example[value_key], feature, os.path.join(directory, f"{index:06d}"))
        count += 1
    if not count:
        raise DataError(f"TFDS dataset '{name}' split '{split}' has no examples. Received: tfds='{name}', split='{split}'")
    open(os.path.join(staging, ".complete"), "w").close()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)


def _safe(text):
    """A folder name for a split or class name (`train[:80%]` -> `train[_80%]`)."""
    return re.sub(r"[/\\:*?\"<>|]", "_", str(text)).strip() or "_"
