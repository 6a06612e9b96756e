"""Image classification datasets from a class-per-folder tree or a CSV manifest.

`image_datasets` lists and splits the files (`tfft/data/sources.py`), checks that every file
decodes, and builds `tf.data` pipelines that decode, resize, cache, batch, augment (training
only) and preprocess. Images reach `preprocess` as float32 in 0-255, the range that
`keras.applications.*.preprocess_input` expects.
"""

import numbers

import keras
import tensorflow as tf

from tfft.data import sources
from tfft.data.checks import (
    augment_settings,
    check_cache,
    check_path_or_manifest,
    check_preprocess,
    check_validation_split,
    positive_int,
)
from tfft.data.pipeline import (
    cache_dataset,
    shuffle_epoch,
    filled,
    finish_datasets,
    fingerprint,
    listing,
    seeded_call,
)
from tfft.errors import DataError
from tfft.modalities.image.keys import IMAGE_EXTENSIONS  # noqa: F401  (re-exported)

# The augmentation `augment=True` stands for; also the full list of valid `augment` keys
# (`rand_augment`: that many RandAugment operations per image, off by default).
DEFAULT_AUGMENT = dict(flip=True, rotation=0.05, zoom=0.1, translation=0.1, contrast=0.1, rand_augment=0)


def _image_size(image_size):
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool)
            for s in image_size
        )
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise DataError(
            "image_size must be an int or a (height, width) pair of ints. "
            f"Received: image_size={image_size!r}"
        )
    if min(size) < 1:
        raise DataError(f"image_size must be positive. Received: image_size={image_size!r}")
    return size


def _decode(path):
    # expand_animations=False returns a GIF's first frame as a 3-D image, so GIFs batch
    # with everything else; channels=3 turns grayscale and RGBA into RGB.
    return tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )


def find_undecodable(paths):
    """Return the files among `paths` that cannot be read or decoded as images.

    Decoding runs in a parallel `tf.data` pass that drops failing elements, and the
    survivors are diffed against the input, so a large folder is checked at decoding
    speed rather than one Python call per file.

    Args:
        paths: file paths.

    Returns:
        The paths that failed, in input order.

    Example:
        >>> find_undecodable(["a.png", "broken.jpg"])
        ['broken.jpg']
    """
    if not paths:
        return []

    def check(path):
        # The shape is returned, not dropped, so that graph pruning cannot skip the decode.
        return path, tf.shape(_decode(path))

    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    decoded = {path.decode("utf-8") for path, _ in ds.as_numpy_iterator()}
    return [path for path in paths if path not in decoded]


def build_augmenter(augment, seed=0):
    """Build the training augmentation as a `keras.Sequential` of preprocessing layers.

    Args:
        augment: None or False for none; True for `DEFAULT_AUGMENT`; or a dict with any of
            the keys `flip` (bool: random horizontal flip), `rotation` (fraction of a full
            turn), `zoom`, `translation` (fractions of the image size), `contrast`
            (factor) and `rand_augment` (that many RandAugment operations per image, at
            magnitude 0.5). A value of 0, False or None turns that step off.
        seed: integer seed; each layer gets its own seed derived from it.

    Returns:
        A `keras.Sequential` that maps float32 0-255 image batches to augmented batches,
        or None when nothing is enabled.

    Example:
        >>> augmenter = build_augmenter(dict(flip=True, rotation=0.05), seed=0)
        >>> [layer.name for layer in augmenter.layers]
        ['flip', 'rotation']
    """
    augment = augment_settings(augment, DEFAULT_AUGMENT)
    if augment is None:
        return None

    layers = []
    for offset, key in enumerate(DEFAULT_AUGMENT):
        value = augment.get(key)
        if value is None or value is False or (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0
        ):
            continue
        if key == "flip":
            if value is not True:
                raise DataError(
                    f"augment['flip'] must be True or False. Received: flip={value!r}"
                )
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip"))
            continue
        if isinstance(value, bool):
            raise DataError(
                f"augment['{key}'] must be a factor such as {DEFAULT_AUGMENT[key]}, not a "
                f"bool. Received: {key}={value!r}"
            )
        layer_seed = seed + offset
        try:
            if key == "rotation":
                layer = keras.layers.RandomRotation(value, seed=layer_seed, name=key)
            elif key == "zoom":
                layer = keras.layers.RandomZoom(value, seed=layer_seed, name=key)
            elif key == "translation":
                layer = keras.layers.RandomTranslation(
                    value, value, seed=layer_seed, name=key
                )
            elif key == "rand_augment":
                if not isinstance(value, numbers.Integral) or value < 1:
                    raise ValueError("a number of operations per image, such as 2")
                layer = keras.layers.RandAugment(
                    value_range=(0, 255), num_ops=int(value), factor=0.5, seed=layer_seed, name=key
                )
            else:
                layer = keras.layers.RandomContrast(
                    value, value_range=(0, 255), seed=layer_seed, name=key
                )
        except (ValueError, TypeError) as e:
            raise DataError(
                f"augment['{key}'] is not a valid factor ({e}). Received: {key}={value!r}"
            ) from None
        layers.append(layer)
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")


def _check_classes_left(labels, class_names, source):
    missing = sorted(set(class_names) - {class_names[label] for label in labels})
    if missing:
        raise DataError(f"After leaving out the files that cannot be read, classes {missing} have no training "
                        f"example left. Received: {source}")


def decode_and_resize(contents, size):
    """Encoded image bytes to float32 RGB in 0-255 at `size`: what the pipelines and an
    exported model both do with a file."""
    # expand_animations=False returns a GIF's first frame as a 3-D image, so GIFs batch
    # with everything else; channels=3 turns grayscale and RGBA into RGB.
    image = tf.image.resize(tf.io.decode_image(contents, channels=3, expand_animations=False), size)
    image.set_shape((size[0], size[1], 3))
    return image


def _load(ds, size):
    def load(path, label):
        return decode_and_resize(tf.io.read_file(path), size), label

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _cache(ds, cache, split, paths, labels, size):
    # A file cache's name carries a fingerprint of the files, labels and size, so changing
    # any of them starts a new cache instead of replaying stale images.
    return cache_dataset(ds, cache, split, lambda: fingerprint((paths, labels, size)))


def image_datasets(
    path=None,
    manifest=None,
    validation_path=None,
    validation_split=0.2,
    image_size=224,
    batch_size=32,
    seed=0,
    augment=None,
    preprocess=None,
    cache=True,
    class_weights=None,
    shuffle_buffer=10000,
    verify=True,
    holdout=None,
    on_error="raise",
):
    """Build training and validation image datasets.

    The images come from a class-per-folder tree (`path`) or a CSV manifest (`manifest`)
    and are split per class into training and validation unless `validation_path` gives a
    separate class-per-folder tree. JPEG, PNG, BMP and GIF (first frame) decode to RGB and
    are resized to `image_size` as float32 in 0-255. The training split is shuffled every
    epoch and augmented; the validation split keeps a fixed order and is never augmented.

    Args:
        path: folder holding one sub-folder per class.
        manifest: CSV with `path,label` columns; give exactly one of `path` and `manifest`.
        validation_path: optional class-per-folder tree used as the validation split; it
            must hold the same classes. When given, `validation_split` is ignored.
        validation_split: share of each class held out for validation.
        image_size: int or `(height, width)`.
        batch_size: examples per batch.
        seed: seed for the split, the shuffle and the augmentation.
        augment: None, True or a dict of augmentation steps; see `build_augmenter`.
        preprocess: callable applied to float32 0-255 batches after augmentation, e.g.
            `keras.applications.resnet.preprocess_input`; None leaves the images as they are.
        cache: True caches decoded, resized images in memory; a string caches them in files
            with that path prefix; False decodes every epoch.
        class_weights: None, `"balanced"` or a dict `{class: weight}`; see
            `tfft.data.sources.class_weights`.
        shuffle_buffer: upper bound on the shuffle buffer. With a cache the buffer holds
            decoded images, so lower it for large images cached to files; without one it
            holds file paths.
        verify: decode every file once before building and raise one `DataError` naming the
            first undecodable file; turn off only for data known to be clean.
        holdout: None, or a share of each class of the training split that replaces the
            validation split, which is then not read at all (see `sources.split_files`).
        on_error: `"raise"` at the first file that cannot be decoded, or `"skip"`: decode
            every file first and leave out the bad ones (`Datasets.skipped` lists them).

    Returns:
        A `Datasets` whose `validation_examples` holds the unbatched, unprocessed
        validation images (float32 0-255) and labels in the order of `validation`.

    Raises:
        DataError: for bad arguments, a missing or empty folder, fewer than two classes,
            mismatched validation classes, or files that cannot be decoded.

    Example:
        >>> data = image_datasets(
        ...     "data/mri", image_size=128, augment=dict(flip=True, rotation=0.05),
        ...     preprocess=keras.applications.resnet.preprocess_input,
        ... )
        >>> data.class_names
        ['glioma', 'meningioma', 'no_tumor', 'pituitary']
    """
    check_path_or_manifest(path, manifest)
    sources.check_on_error(on_error)
    size = _image_size(image_size)
    batch_size = positive_int("batch_size", batch_size)
    shuffle_buffer = positive_int("shuffle_buffer", shuffle_buffer)
    if validation_path is None:
        check_validation_split(validation_split)
    check_preprocess(preprocess)
    check_cache(cache)
    augmenter = build_augmenter(augment, seed)

    split = sources.split_files(
        path, manifest, validation_path, validation_split, seed, IMAGE_EXTENSIONS, holdout
    )
    train_paths, train_labels, val_paths, val_labels, class_names, source = split[:6]

    skipped = []
    if verify or on_error == "skip":
        # Listing order, so "first" means the same file a user would find first.
        everything = split.all_paths
        bad = find_undecodable(everything)
        if bad and on_error == "raise":
            raise DataError(
                f"{len(bad)} of {len(everything)} image files cannot be decoded, first: "
                f"{bad[0]}. Delete or re-save them as JPEG, PNG, BMP or GIF, pass "
                f"on_error='skip' to train without them, or verify=False to skip this check. "
                f"Received: {source}"
            )
        if bad:
            skipped = [(path, "cannot be decoded as a JPEG, PNG, BMP or GIF image") for path in bad]
            split = sources.drop_files(split, set(bad))
            train_paths, train_labels, val_paths, val_labels = split[:4]
            _check_classes_left(train_labels, class_names, source)

    weights = sources.class_weights(
        train_labels, len(class_names), class_weights, class_names=class_names
    )

    buffer = min(shuffle_buffer, len(train_paths))
    listed = listing(train_paths, train_labels)
    # A cache holds decoded images in listing order; each epoch shuffles them anew after
    # it (a cache fed by shuffled paths would replay the first epoch's order). Without a
    # cache, paths are shuffled and only then decoded, keeping images out of the buffer.
    decoded = _cache(_load(listed, size), cache, "train", train_paths, train_labels, size) if cache else None

    def train_epoch(epoch, skip=0):
        order = decoded if cache else listed
        ds = shuffle_epoch(order, buffer, seed, epoch)
        ds = ds.skip(skip * batch_size)
        if not cache:
            ds = _load(ds, size)
        ds = ds.batch(batch_size)
        if augmenter is not None:
            # Sequential map: the seeds are set per batch from its place in the stream.
            first = tf.cast(epoch, tf.int64) * steps_per_epoch + skip
            ds = ds.enumerate(first).map(lambda i, xy: (seeded_call(augmenter, xy[0], seed, i), xy[1]))
        return ds if preprocess is None else ds.map(
            lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    steps_per_epoch = -(-len(train_paths) // batch_size)
    val_decoded = _load(listing(val_paths, val_labels), size)
    cached_val = _cache(val_decoded, cache, "validation", val_paths, val_labels, size)
    validation = cached_val.batch(batch_size)
    if preprocess is not None:
        validation = validation.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    # A memory cache can be shared; a file cache cannot be read by two iterators while
    # it is being written, so the examples then decode on their own.
    validation_examples = cached_val if cache is True else val_decoded

    def in_order():
        ds = (decoded if cache is True else _load(listed, size)).batch(batch_size)
        return ds if preprocess is None else ds.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)

    return finish_datasets(
        train_epoch, validation, class_names, weights, len(train_paths), len(val_paths),
        validation_examples, batch_size, prime=filled(cache, decoded, len(train_paths)), skipped=skipped,
        items=dict(train=list(zip(train_paths, train_labels)), validation=list(zip(val_paths, val_labels))),
        in_order=in_order if augmenter is None else None, shuffle=(buffer, seed),
    )
