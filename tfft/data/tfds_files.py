"""TensorFlow Datasets for modalities that read files: a TFDS split written once as a
class-per-folder tree in tfft's cache, then read by the modality's own folder pipeline.

Images keep the bytes TFDS stores (JPEG for `tf_flowers`, no re-encoding); recordings are
written as WAV at the data set's sample rate (16-bit PCM for integer audio, as
`speech_commands` stores it). The folder pipeline then gives a TFDS source everything a
folder has: the check of every file, caching, augmentation, the held-out fold, and
evaluation and misclassified examples named by file. A split is written to a staging
folder of its own and renamed when whole, so an interrupted write is started again, never
half read, and two runs writing the same split at once both end with one whole copy.

    ~/.cache/tfft/tfds/tf_flowers/3.0.1/train/daisy/000017.jpg     (name/config/version)

Example:
    >>> tfds_folders("tf_flowers", ("train", None), feature="Image", write=write_image)
    {'path': '~/.cache/tfft/tfds/tf_flowers/3.0.1/train', 'validation_path': None}
"""

import difflib
import io
import os
import re
import shutil

from tfft.errors import DataError

_MAGIC = ((b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def tfds_folders(name, splits, feature, write, verbose=0, key="data.tfds_split"):
    """Write the TFDS data set `name`'s splits as class folders; return the sources.

    Args:
        name: a TFDS name, with a config or version if wanted (`"tf_flowers"`).
        splits: `(train_split, validation_split)`; a validation split of None leaves the
            validation to `data.validation_split` of the training split.
        feature: the TFDS feature class the modality reads (`"Image"`, `"Audio"`).
        write: `write(value, feature, stem) -> path`: one example's value to a file at
            `stem` plus the extension it chooses.
        key: how the user gave the splits, for the error about a missing one.

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
    # The full name keeps a builder's configs apart (`cifar10_corrupted/brightness_1/1.0.0`).
    root = os.path.join(cache_dir(), "tfds", *[_safe(part) for part in info.full_name.split("/")])
    folders = {}
    for role, split in zip(("path", "validation_path"), splits):
        if split is None:
            folders[role] = None
            continue
        _check_split(name, info, split, key)
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
    if np.issubdtype(samples.dtype, np.integer):
        # TFDS stores integer audio as int16 or int64 (gtzan, spoken_digit, ...), its values
        # 16-bit samples either way; wider values keep their scale as 32-bit PCM.
        narrow = not samples.size or (samples.min() >= -32768 and samples.max() <= 32767)
        subtype, samples = ("PCM_16", samples.astype(np.int16)) if narrow else ("PCM_32", samples.astype(np.int32))
    else:
        subtype, samples = "FLOAT", samples.astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, int(rate), subtype=subtype, format="WAV")
    with open(stem + ".wav", "wb") as file:
        file.write(buffer.getvalue())
    return stem + ".wav"


def _builder(tfds, name):
    try:
        return tfds.builder(name)
    except tfds.core.registered.DatasetNotFoundError:
        raise unknown_name(tfds, name) from None
    except (ValueError, AssertionError) as error:  # an unknown config or version
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"TensorFlow Datasets cannot open '{name}': {first}. Received: tfds='{name}'") from None


def unknown_name(tfds, name):
    """The `DataError` for a TFDS name that is not registered, with the closest names."""
    base = name.split("/")[0].split(":")[0]
    close = difflib.get_close_matches(base, tfds.list_builders(), n=3)
    hint = f" Did you mean {close}?" if close else ""
    return DataError(f"TensorFlow Datasets has no dataset named '{name}'; check the name with "
                     f"`tfds.list_builders()` or the catalog at https://www.tensorflow.org/datasets/catalog."
                     f"{hint} Received: tfds='{name}'")


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


def _check_split(name, info, split, key):
    splits = sorted(info.splits.keys()) if info.splits else []
    base = re.split(r"[\[+(]", split)[0]
    if splits and base not in splits:
        hint = (f" Set data.tfds_split=['{'train' if 'train' in splits else splits[0]}', None] to hold out "
                "data.validation_split of the training split." if key == "data.tfds_split" else "")
        raise DataError(f"TFDS dataset '{name}' has no split '{base}'; its splits: {splits}.{hint} "
                        f"Received: {key} split '{split}'")


def _write_split(tfds, name, split, value_key, label_key, class_names, feature, write, folder):
    folders = [_safe(c) for c in class_names]
    clashes = sorted({f for f in folders if folders.count(f) > 1})
    if clashes:
        raise DataError(f"TFDS dataset '{name}': several class names make the same folder name {clashes}; "
                        f"tfft cannot keep them apart. Received: classes={class_names}")
    staging = f"{folder}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    decoders = {value_key: tfds.decode.SkipDecoding()} if type(feature).__name__ == "Image" else None
    try:
        _write_examples(tfds, name, split, decoders, value_key, label_key, class_names, folders, feature,
                                write, staging)
        open(os.path.join(staging, ".complete"), "w").close()
        if os.path.isfile(os.path.join(folder, ".complete")):
            return  # another run wrote it meanwhile: keep that copy
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError:
        if not os.path.isfile(os.path.join(folder, ".complete")):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_examples(tfds, name, split, decoders, value_key, label_key, class_names, folders, feature, write, staging):
    import tensorflow as tf

    try:
        dataset = tfds.load(name, split=split, decoders=decoders)
    except (ValueError, KeyError, OSError, AssertionError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"Cannot load TFDS dataset '{name}' split '{split}': {first}. "
                        f"Received: tfds='{name}', split='{split}'") from None
    count = 0
    try:
        for index, example in enumerate(tfds.as_numpy(dataset)):
            label = int(example[label_key])
            if not 0 <= label < len(class_names):
                raise DataError(f"TFDS dataset '{name}' split '{split}', example {index}: label {label} is not a "
                                f"class index (the split may be unlabelled); use a labelled split. "
                                f"Received: classes={class_names}")
            directory = os.path.join(staging, folders[label])
            os.makedirs(directory, exist_ok=True)
            write(example[value_key], feature, os.path.join(directory, f"{index:06d}"))
            count += 1
    except tf.errors.OpError as error:
        first = (error.message.strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"TFDS dataset '{name}' split '{split}', example {count}: {first}. "
                        f"Received: tfds='{name}', split='{split}'") from None
    if not count:
        raise DataError(f"TFDS dataset '{name}' split '{split}' has no examples. Received: tfds='{name}', split='{split}'")
    return count


def _safe(text):
    """A folder name for a split or class name (`train[:80%]` -> `train[_80%]`): no path
    separators, and no leading dot (a hidden folder is skipped; `..` would climb)."""
    name = re.sub(r"[/\\:*?\"<>|]", "_", str(text)).strip()
    return re.sub(r"^\.", "_", name) or "_"
