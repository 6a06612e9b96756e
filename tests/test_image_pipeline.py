import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfft.modalities.image import pipeline as image_data
from tfft.data import sources
from tfft.modalities.image.pipeline import IMAGE_EXTENSIONS, image_datasets
from tfft.errors import DataError

SIZE = 16


# --- tiny files of every supported format, written without Pillow ---------------------


def _bmp_bytes(rgb):
    """A 24-bit uncompressed BMP: BGR pixels, bottom-up rows padded to 4 bytes."""
    height, width, _ = rgb.shape
    pad = b"\0" * ((4 - (width * 3) % 4) % 4)
    data = b"".join(rgb[y, :, ::-1].tobytes() + pad for y in range(height - 1, -1, -1))
    file_header = struct.pack("<2sIHHI", b"BM", 14 + 40 + len(data), 0, 0, 14 + 40)
    info_header = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0
    )
    return file_header + info_header + data


def _lzw_literals(indices):
    """LZW data that only uses literal 9-bit codes, with a clear code often enough that
    the decoder's table never grows past 9 bits."""
    clear, end = 256, 257
    codes = []
    for start in range(0, len(indices), 100):
        codes.append(clear)
        codes.extend(int(i) for i in indices[start : start + 100])
    codes.append(end)
    out, bits, nbits = bytearray(), 0, 0
    for code in codes:
        bits |= code << nbits
        nbits += 9
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


def _gif_bytes(frames, palette):
    """A GIF89a with a 256-colour global palette and one image per frame."""
    height, width = frames[0].shape
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", width, height, 0xF7, 0, 0)
    out += np.asarray(palette, np.uint8).tobytes()
    for frame in frames:
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        out += bytes([8])
        data = _lzw_literals(frame.ravel())
        for start in range(0, len(data), 255):
            chunk = data[start : start + 255]
            out += bytes([len(chunk)]) + chunk
        out += b"\x00"
    out += b"\x3b"
    return bytes(out)


def _gif_palette():
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (250, 10, 10)
    palette[2] = (10, 10, 250)
    return palette


def _noisy(rgb, seed, shape=(SIZE, SIZE)):
    """An image of colour `rgb` with noise, so flips and rotations change pixels."""
    noise = np.random.default_rng(seed).integers(-40, 40, (*shape, 3))
    return np.clip(np.asarray(rgb) + noise, 0, 255).astype(np.uint8)


def _write(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".png":
        data = tf.io.encode_png(rgb).numpy()
    elif extension in (".jpg", ".jpeg"):
        data = tf.io.encode_jpeg(rgb, quality=95).numpy()
    elif extension == ".bmp":
        data = _bmp_bytes(rgb)
    else:
        raise AssertionError(extension)
    with open(path, "wb") as f:
        f.write(data)


COLOURS = {"cat": (200, 60, 60), "dog": (60, 200, 60), "fox": (60, 60, 200)}


def _tree(root, counts, shape=(SIZE, SIZE)):
    """A class-per-folder tree of noisy PNGs; returns the root as a string."""
    for name, count in counts.items():
        for i in range(count):
            _write(
                os.path.join(root, name, f"{name}_{i:02d}.png"),
                _noisy(COLOURS[name], seed=1000 * list(COLOURS).index(name) + i, shape=shape),
            )
    return str(root)


def _plain(path, size=SIZE):
    """Decode and resize one file the way the pipeline should, without any pipeline."""
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )
    return tf.image.resize(image, (size, size)).numpy()


def _stack(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# --- listing ---------------------------------------------------------------------------


def test_list_class_folders_finds_classes_and_skips_hidden_and_empty(tmp_path):
    _tree(tmp_path, {"cat": 3, "dog": 2})
    _write(str(tmp_path / "dog" / "nested" / "deep.PNG"), _noisy(COLOURS["dog"], 1))
    _write(str(tmp_path / "cat" / ".hidden.png"), _noisy(COLOURS["cat"], 2))
    _write(str(tmp_path / "cat" / ".ipynb_checkpoints" / "x.png"), _noisy((0, 0, 0), 3))
    _write(str(tmp_path / ".trash" / "y.png"), _noisy((0, 0, 0), 4))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()

    paths, labels, names = sources.list_class_folders(tmp_path, IMAGE_EXTENSIONS)

    assert names == ["cat", "dog"]
    assert labels == [0, 0, 0, 1, 1, 1]
    assert all(os.path.isfile(p) for p in paths)
    assert not any("hidden" in p or "ipynb" in p or "trash" in p for p in paths)
    assert any(p.endswith("deep.PNG") for p in paths)


@pytest.mark.parametrize(
    "layout, expected",
    [
        ("missing", "does not exist"),
        ("file", "is a file"),
        ("empty", "No files found"),
        ("loose", "no class sub-folders"),
        ("one_class", "only 1 class"),
        ("one_class_and_empty", "only 1 class"),
    ],
)
def test_list_class_folders_errors_name_the_folder(tmp_path, layout, expected):
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("x")
    elif layout == "empty":
        (root / "cat").mkdir(parents=True)
    elif layout == "loose":
        _write(str(root / "a.png"), _noisy((1, 2, 3), 0))
    elif layout.startswith("one_class"):
        _tree(root, {"cat": 2})
        if layout == "one_class_and_empty":
            (root / "dog").mkdir()
    with pytest.raises(DataError, match=expected) as info:
        sources.list_class_folders(root, IMAGE_EXTENSIONS)
    assert str(root) in str(info.value)
    if layout.startswith("one_class"):
        assert "'cat'" in str(info.value)


# --- manifest --------------------------------------------------------------------------


def test_read_manifest_resolves_relative_paths_against_the_csv(tmp_path):
    _tree(tmp_path / "images", {"cat": 2, "dog": 2})
    absolute = str(tmp_path / "images" / "dog" / "dog_01.png")
    (tmp_path / "meta").mkdir()
    csv_path = tmp_path / "meta" / "train.csv"
    csv_path.write_text(
        "path,label\n"
        "../images/cat/cat_00.png,cat\n"
        "../images/dog/dog_00.png,dog\n"
        f"{absolute},dog\n"
        "../images/cat/cat_01.png,cat\n"
    )

    paths, labels, names = sources.read_manifest(csv_path)

    assert names == ["cat", "dog"]
    assert labels == [0, 1, 1, 0]
    assert paths[0] == str(tmp_path / "images" / "cat" / "cat_00.png")
    assert paths[2] == absolute


def test_read_manifest_custom_columns_and_fixed_class_names(tmp_path):
    _tree(tmp_path, {"cat": 1, "dog": 1})
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("file,y,extra\ncat/cat_00.png,cat,1\ndog/dog_00.png,dog,2\n")
    _, labels, names = sources.read_manifest(
        csv_path, path_column="file", label_column="y", class_names=["dog", "cat", "fox"]
    )
    assert names == ["dog", "cat", "fox"]
    assert labels == [1, 0]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("file,label\ncat/cat_00.png,cat\n", "line 1: the header has no 'path' column"),
        ("path,label\ncat/cat_00.png,cat\n,dog\n", "line 3: the 'path' cell is empty"),
        ("path,label\ncat/cat_00.png,cat\ncat/cat_00.png,\n", "line 3: the 'label'"),
        ("path,label\ncat/cat_00.png,cat\ndog/nope.png,dog\n", "line 3: file .*nope.png"),
        ("path,label\n", "no rows"),
        ("path,label\ncat/cat_00.png,cat\n", "only 1 class"),
    ],
)
def test_read_manifest_errors_name_the_file_and_line(tmp_path, body, expected):
    _tree(tmp_path, {"cat": 1})
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(body)
    with pytest.raises(DataError, match=expected) as info:
        sources.read_manifest(csv_path)
    assert "bad.csv" in str(info.value)


def test_read_manifest_rejects_unknown_label_and_missing_csv(tmp_path):
    _tree(tmp_path, {"cat": 1})
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\ncat/cat_00.png,cow\n")
    with pytest.raises(DataError, match=r"m.csv, line 2: label 'cow'"):
        sources.read_manifest(csv_path, class_names=["cat", "dog"])
    with pytest.raises(DataError, match="gone.csv"):
        sources.read_manifest(tmp_path / "gone.csv")


# --- splitting and weights -------------------------------------------------------------


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = np.array([0] * 50 + [1] * 20 + [2] * 2 + [3] * 1)
    train_idx, val_idx = sources.stratified_split(labels, 0.2, seed=0)

    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(73))
    val_counts = np.bincount(labels[val_idx], minlength=4)
    train_counts = np.bincount(labels[train_idx], minlength=4)
    assert val_counts.tolist() == [10, 4, 1, 0]
    assert train_counts.tolist() == [40, 16, 1, 1]
    assert train_idx.dtype == np.int64 and val_idx.dtype == np.int64


def test_stratified_split_is_deterministic_per_seed():
    labels = [0] * 30 + [1] * 30
    a = sources.stratified_split(labels, 0.3, seed=7)
    b = sources.stratified_split(labels, 0.3, seed=7)
    c = sources.stratified_split(labels, 0.3, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.2", True])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(DataError, match="fraction="):
        sources.stratified_split([0, 0, 1, 1], fraction, seed=0)


def test_class_weights_modes():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    assert sources.class_weights(labels, 3, None) is None
    balanced = sources.class_weights(labels, 3, "balanced")
    assert balanced == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    assert all(type(w) is float for w in balanced.values())
    named = sources.class_weights(
        labels, 3, {"dog": 2, 2: 0.5}, class_names=["cat", "dog", "fox"]
    )
    assert named == {0: 1.0, 1: 2.0, 2: 0.5}


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("inverse", "'balanced'"),
        ({"cow": 1.0}, "'cow' is not a class"),
        ({5: 1.0}, "out of range"),
        ({"cat": -1.0}, "finite number"),
        ({"cat": 2.0, 0: 3.0}, "twice"),
    ],
)
def test_class_weights_errors(mode, expected):
    with pytest.raises(DataError, match=expected):
        sources.class_weights([0, 1], 2, mode, class_names=["cat", "dog"])


def test_balanced_weights_need_every_class():
    with pytest.raises(DataError, match="fox"):
        sources.class_weights([0, 1], 3, "balanced", class_names=["cat", "dog", "fox"])


# --- decoding --------------------------------------------------------------------------


def test_every_format_decodes_to_rgb_of_the_requested_size(tmp_path):
    red, blue = _noisy((250, 10, 10), 0), _noisy((10, 10, 250), 1)
    _write(str(tmp_path / "a" / "x.png"), red)
    _write(str(tmp_path / "a" / "x.jpeg"), red)
    _write(str(tmp_path / "b" / "y.bmp"), blue)
    _write(str(tmp_path / "b" / "z.jpg"), blue)
    gray = np.random.default_rng(0).integers(0, 255, (20, 12, 1)).astype(np.uint8)
    _write(str(tmp_path / "b" / "gray.png"), gray)
    # An animated GIF: the first frame is red, the second blue.
    frames = [np.ones((SIZE, SIZE), np.uint8), np.full((SIZE, SIZE), 2, np.uint8)]
    (tmp_path / "a" / "anim.gif").write_bytes(_gif_bytes(frames, _gif_palette()))

    data = image_datasets(
        tmp_path, validation_split=0.5, image_size=(SIZE, 24), batch_size=2, cache=False
    )
    assert data.num_train + data.num_validation == 6
    images, labels = _stack(data.train)
    assert images.shape == (data.num_train, SIZE, 24, 3)
    assert images.dtype == np.float32 and labels.dtype == np.int32

    bmp = _plain(str(tmp_path / "b" / "y.bmp"))
    np.testing.assert_array_equal(bmp, blue.astype(np.float32))
    gif = _plain(str(tmp_path / "a" / "anim.gif"))
    assert gif.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(gif[0, 0], [250, 10, 10])
    assert _plain(str(tmp_path / "b" / "gray.png")).shape == (SIZE, SIZE, 3)


def test_undecodable_files_raise_one_error_naming_the_first(tmp_path):
    root = _tree(tmp_path / "data", {"cat": 4, "dog": 4})
    (tmp_path / "data" / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = tf.io.encode_jpeg(_noisy((1, 2, 3), 0)).numpy()
    (tmp_path / "data" / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "data" / "dog" / "empty.png").write_bytes(b"")

    paths = sources.list_class_folders(root, IMAGE_EXTENSIONS)[0]
    assert [os.path.basename(p) for p in image_data.find_undecodable(paths)] == [
        "broken.jpg", "empty.png", "truncated.jpg"
    ]
    with pytest.raises(DataError, match=r"^3 of 11 image files cannot be decoded") as info:
        image_datasets(root, image_size=SIZE)
    assert "broken.jpg" in str(info.value)
    assert "verify=False" in str(info.value)

    # Unchecked, the bad files only fail once the pipeline reaches them.
    data = image_datasets(root, image_size=SIZE, verify=False, cache=False)
    assert data.num_train + data.num_validation == 11


# --- image_datasets --------------------------------------------------------------------


def test_split_is_stratified_and_labels_match_the_images(tmp_path):
    root = _tree(tmp_path, {"cat": 10, "dog": 5, "fox": 2})
    data = image_datasets(root, validation_split=0.2, image_size=SIZE, batch_size=4)

    assert data.class_names == ["cat", "dog", "fox"]
    assert data.num_classes == 3
    assert (data.num_train, data.num_validation) == (13, 4)
    assert data.class_weights is None
    train_images, train_labels = _stack(data.train)
    val_images, val_labels = _stack(data.validation)
    assert np.bincount(train_labels).tolist() == [8, 4, 1]
    assert np.bincount(val_labels).tolist() == [2, 1, 1]
    # Each class has its own colour, so the dominant channel gives the label back.
    for images, labels in ((train_images, train_labels), (val_images, val_labels)):
        np.testing.assert_array_equal(images.mean(axis=(1, 2)).argmax(-1), labels)
    assert data.train.element_spec[0].shape.as_list() == [None, SIZE, SIZE, 3]


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    root = _tree(tmp_path, {"cat": 10, "dog": 10})

    def validation(seed):
        data = image_datasets(root, image_size=SIZE, seed=seed, cache=False)
        return _stack(data.validation)[0]

    np.testing.assert_array_equal(validation(3), validation(3))
    assert not np.array_equal(validation(3), validation(4))


def test_augmentation_only_touches_training_batches(tmp_path):
    root = _tree(tmp_path, {"cat": 6, "dog": 6})
    kwargs = dict(image_size=SIZE, batch_size=4, validation_split=0.25, seed=1)
    augment = dict(flip=True, rotation=0.1, zoom=0.1, translation=0.1, contrast=0.2)
    augmented = image_datasets(root, augment=augment, **kwargs)
    plain = image_datasets(root, **kwargs)

    # Same seed, same shuffle: only the augmentation differs between the two.
    aug_batch, aug_labels = next(iter(augmented.train))
    plain_batch, plain_labels = next(iter(plain.train))
    np.testing.assert_array_equal(aug_labels, plain_labels)
    assert not np.allclose(aug_batch, plain_batch)
    assert not np.allclose(_stack(augmented.epoch(0))[0], _stack(augmented.epoch(1))[0])

    first, first_labels = _stack(augmented.validation)
    second, _ = _stack(augmented.validation)
    np.testing.assert_array_equal(first, second)
    paths, labels, _ = sources.list_class_folders(root, IMAGE_EXTENSIONS)
    _, val_idx = sources.stratified_split(labels, 0.25, seed=1)
    expected = np.stack([_plain(paths[i]) for i in val_idx])
    np.testing.assert_allclose(first, expected, atol=1e-4)
    np.testing.assert_array_equal(first_labels, [labels[i] for i in val_idx])


def test_training_order_changes_every_epoch(tmp_path):
    root = _tree(tmp_path, {"cat": 8, "dog": 8})
    data = image_datasets(root, image_size=SIZE, batch_size=16, validation_split=0.25)
    epochs = [_stack(data.epoch(e))[0] for e in range(3)]
    assert not all(np.array_equal(epochs[0], epoch) for epoch in epochs[1:])
    # Reshuffled, not resampled: the same examples each epoch.
    sums = [np.sort(epoch.sum(axis=(1, 2, 3))) for epoch in epochs]
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-5)


def test_unknown_augment_key_lists_the_valid_ones(tmp_path):
    root = _tree(tmp_path, {"cat": 2, "dog": 2})
    with pytest.raises(DataError, match=r"\['blur'\].*'flip', 'rotation', 'zoom'"):
        image_datasets(root, augment=dict(flip=True, blur=0.1))
    with pytest.raises(DataError, match="rotation"):
        image_datasets(root, augment=dict(rotation=True))


def test_preprocess_runs_on_both_splits_but_not_on_examples(tmp_path):
    root = _tree(tmp_path, {"cat": 4, "dog": 4})
    kwargs = dict(image_size=SIZE, batch_size=8, validation_split=0.5)
    raw = image_datasets(root, **kwargs)
    scaled = image_datasets(root, preprocess=lambda x: x / 127.5 - 1.0, **kwargs)

    np.testing.assert_allclose(
        _stack(scaled.validation)[0], _stack(raw.validation)[0] / 127.5 - 1.0, atol=1e-5
    )
    assert _stack(scaled.train)[0].max() <= 1.0
    examples = [x.numpy() for x, _ in scaled.validation_examples]
    np.testing.assert_allclose(np.stack(examples), _stack(raw.validation)[0])


def test_keras_applications_preprocess_input_works_in_the_pipeline(tmp_path):
    import keras

    root = _tree(tmp_path, {"cat": 2, "dog": 2})
    data = image_datasets(
        root, image_size=SIZE, validation_split=0.5,
        preprocess=keras.applications.resnet.preprocess_input,
    )
    images, _ = _stack(data.validation)
    assert images.min() < 0  # mean subtraction happened


def test_validation_examples_are_unbatched_in_validation_order(tmp_path):
    root = _tree(tmp_path, {"cat": 5, "dog": 5})
    data = image_datasets(root, image_size=SIZE, batch_size=3, cache=False)
    spec = data.validation_examples.element_spec
    assert spec[0].shape.as_list() == [SIZE, SIZE, 3] and spec[0].dtype == tf.float32
    assert spec[1].dtype == tf.int32
    images = np.stack([x.numpy() for x, _ in data.validation_examples])
    labels = np.array([y.numpy() for _, y in data.validation_examples])
    val_images, val_labels = _stack(data.validation)
    np.testing.assert_array_equal(images, val_images)
    np.testing.assert_array_equal(labels, val_labels)


def test_file_cache_is_keyed_by_content(tmp_path):
    root = _tree(tmp_path / "data", {"cat": 4, "dog": 4})
    prefix = str(tmp_path / "cache" / "pets")
    first = image_datasets(root, image_size=SIZE, cache=prefix)
    a = _stack(first.validation)[0]
    np.testing.assert_array_equal(a, _stack(first.validation)[0])
    _stack(first.train)
    written = os.listdir(tmp_path / "cache")
    assert any(name.startswith("pets-train-") for name in written)
    assert any(name.startswith("pets-validation-") for name in written)

    # A new size must not replay the 16-pixel images cached above.
    bigger = image_datasets(root, image_size=24, cache=prefix)
    assert _stack(bigger.validation)[0].shape[1:] == (24, 24, 3)


def test_memory_cache_replays_identical_validation(tmp_path):
    root = _tree(tmp_path, {"cat": 4, "dog": 4})
    data = image_datasets(root, image_size=SIZE, cache=True)
    first = _stack(data.validation)[0]
    # Removing the files proves the second pass comes from the cache.
    for name in ("cat", "dog"):
        for f in os.listdir(tmp_path / name):
            os.remove(tmp_path / name / f)
    np.testing.assert_array_equal(first, _stack(data.validation)[0])


def test_class_weights_are_computed_on_the_training_split(tmp_path):
    root = _tree(tmp_path, {"cat": 10, "dog": 5})
    data = image_datasets(root, image_size=SIZE, class_weights="balanced")
    # 8 cats and 4 dogs train: 12 / (2 * 8) and 12 / (2 * 4).
    assert data.class_weights == pytest.approx({0: 0.75, 1: 1.5})
    data = image_datasets(root, image_size=SIZE, class_weights={"dog": 3.0})
    assert data.class_weights == {0: 1.0, 1: 3.0}


def test_validation_path_is_used_as_is(tmp_path):
    train_root = _tree(tmp_path / "train", {"cat": 4, "dog": 4})
    val_root = _tree(tmp_path / "val", {"cat": 2, "dog": 1})
    data = image_datasets(train_root, validation_path=val_root, image_size=SIZE)
    assert (data.num_train, data.num_validation) == (8, 3)
    assert _stack(data.validation)[1].tolist() == [0, 0, 1]


def test_validation_path_with_other_classes_is_an_error(tmp_path):
    train_root = _tree(tmp_path / "train", {"cat": 2, "dog": 2, "fox": 2})
    val_root = _tree(tmp_path / "val", {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match=r"missing \['fox'\], extra \[\]") as info:
        image_datasets(train_root, validation_path=val_root, image_size=SIZE)
    assert str(val_root) in str(info.value)


def test_manifest_end_to_end(tmp_path):
    _tree(tmp_path / "images", {"cat": 4, "dog": 4})
    rows = [f"images/{n}/{n}_{i:02d}.png,{n}" for n in ("cat", "dog") for i in range(4)]
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("path,label\n" + "\n".join(rows) + "\n")
    data = image_datasets(manifest=csv_path, image_size=SIZE, validation_split=0.25)
    assert data.class_names == ["cat", "dog"]
    assert (data.num_train, data.num_validation) == (6, 2)
    images, labels = _stack(data.validation)
    np.testing.assert_array_equal(images.mean(axis=(1, 2)).argmax(-1), labels)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(), "exactly one of"),
        (dict(path="x", manifest="y.csv"), "exactly one of"),
        (dict(path="x", image_size=(16,)), "image_size"),
        (dict(path="x", batch_size=0), "batch_size=0"),
        (dict(path="x", validation_split=1.0), "validation_split=1.0"),
        (dict(path="x", preprocess="resnet"), "preprocess='resnet'"),
        (dict(path="x", augment="strong"), "augment='strong'"),
    ],
)
def test_bad_arguments_fail_before_reading_anything(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        image_datasets(**kwargs)


def test_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        image_datasets(tmp_path / "nowhere")


def test_a_split_without_validation_examples_is_an_error(tmp_path):
    root = _tree(tmp_path, {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="single example") as info:
        image_datasets(root, image_size=SIZE)
    assert str(tmp_path) in str(info.value)
