import os

import numpy as np
import pytest
import tensorflow as tf

from tfft.modalities.image import demo as synthetic
from tfft.modalities.image.pipeline import IMAGE_EXTENSIONS, image_datasets
from tfft.data.sources import list_class_folders
from tfft.modalities.image.demo import SYNTHETIC_MRI_CLASSES, make_synthetic_mri
from tfft.errors import DataError


def _files(folder):
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.endswith(".png")
    )


def _load(folder):
    paths, labels, names = list_class_folders(folder, IMAGE_EXTENSIONS)
    images = np.stack(
        [tf.io.decode_png(tf.io.read_file(p)).numpy()[:, :, 0] for p in paths]
    ).astype(np.float32) / 255.0
    return images, np.array(labels), names


def test_writes_one_folder_per_class(tmp_path):
    folder = make_synthetic_mri(tmp_path / "mri", per_class=5, image_size=32, seed=0)

    assert folder == str(tmp_path / "mri")
    assert sorted(os.listdir(folder)) == [".complete", *SYNTHETIC_MRI_CLASSES]
    paths, labels, names = list_class_folders(folder, IMAGE_EXTENSIONS)
    assert names == list(SYNTHETIC_MRI_CLASSES)
    assert np.bincount(labels).tolist() == [5, 5, 5, 5]
    image = tf.io.decode_png(tf.io.read_file(paths[0])).numpy()
    assert image.shape == (32, 32, 1) and image.dtype == np.uint8
    # Nothing is left beside the set: the staging folder was renamed into place.
    assert os.listdir(tmp_path) == ["mri"]


def test_second_call_with_same_parameters_does_not_rewrite(tmp_path):
    folder = make_synthetic_mri(tmp_path / "mri", per_class=3, image_size=32, seed=0)
    before = {p: os.stat(p).st_mtime_ns for p in _files(folder)}

    assert make_synthetic_mri(tmp_path / "mri", per_class=3, image_size=32, seed=0) == folder
    assert {p: os.stat(p).st_mtime_ns for p in _files(folder)} == before

    # Other parameters replace the set the function made itself.
    make_synthetic_mri(tmp_path / "mri", per_class=2, image_size=32, seed=0)
    assert len(_files(folder)) == 4 * 2
    assert os.listdir(tmp_path) == ["mri"]


def test_same_seed_same_images_other_seed_other_images(tmp_path):
    def pixels(name, seed):
        folder = make_synthetic_mri(tmp_path / name, per_class=2, image_size=32, seed=seed)
        return _load(folder)[0]

    np.testing.assert_array_equal(pixels("a", 1), pixels("b", 1))
    assert not np.array_equal(pixels("a", 1), pixels("c", 2))


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    draw = synthetic._draw_slice

    def failing_draw(rng, label, size):
        calls.append(label)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return draw(rng, label, size)

    monkeypatch.setattr(synthetic, "_draw_slice", failing_draw)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_mri(tmp_path / "mri", per_class=3, image_size=32)
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="photos"):
        make_synthetic_mri(tmp_path / "photos", per_class=1, image_size=32)
    assert os.listdir(tmp_path / "photos") == ["holiday.jpg"]
    with pytest.raises(DataError, match="image_size=8"):
        make_synthetic_mri(tmp_path / "mri", image_size=8)


def test_image_datasets_reads_the_set(tmp_path):
    folder = make_synthetic_mri(tmp_path / "mri", per_class=4, image_size=32)
    data = image_datasets(folder, image_size=32, batch_size=8, validation_split=0.25)
    assert data.class_names == list(SYNTHETIC_MRI_CLASSES)
    assert (data.num_train, data.num_validation) == (12, 4)


def _fit_softmax(features, labels, train, steps=300, rate=0.5, l2=0.05):
    """Multinomial logistic regression by gradient descent; returns a predict function."""
    mean = features[train].mean(0)
    std = features[train].std(0) + 1e-6
    z = (features - mean) / std
    onehot = np.eye(labels.max() + 1)[labels[train]]
    weights = np.zeros((z.shape[1], onehot.shape[1]))
    bias = np.zeros(onehot.shape[1])
    for _ in range(steps):
        logits = z[train] @ weights + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        grad = (probs - onehot) / len(train)
        weights -= rate * (z[train].T @ grad + l2 * weights)
        bias -= rate * grad.sum(0)
    return lambda rows: (z[rows] @ weights + bias).argmax(1)


def test_classes_are_learnable_but_not_from_one_pixel(tmp_path):
    folder = make_synthetic_mri(tmp_path / "mri", per_class=100, image_size=64, seed=0)
    images, labels, _ = _load(folder)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:280], order[280:]

    # Each image is rescaled by its median head intensity, which undoes the random
    # brightness, then described by 4x4-pixel means and its bright-tail quantiles.
    head = images > 0.15
    median = np.array([np.median(x[m]) for x, m in zip(images, head)])
    blocks = images.reshape(len(images), 16, 4, 16, 4).mean((2, 4)).reshape(len(images), -1)
    quantiles = np.stack(
        [
            np.quantile(x[m] / med, [0.01, 0.05, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999])
            for x, m, med in zip(images, head, median)
        ]
    )
    features = np.concatenate([blocks / median[:, None], quantiles], axis=1)
    predict = _fit_softmax(features, labels, train)
    accuracy = (predict(test) == labels[test]).mean()
    assert accuracy > 0.55, accuracy  # chance is 0.25

    # The best single pixel (nearest class mean, chosen on the training split) stays
    # near chance, so the lesions vary enough that no fixed location gives them away.
    pixels = images.reshape(len(images), -1)
    means = np.stack([pixels[train][labels[train] == c].mean(0) for c in range(4)])
    train_pred = np.abs(pixels[train][:, :, None] - means.T[None]).argmin(-1)
    best = (train_pred == labels[train][:, None]).mean(0).argmax()
    test_pred = np.abs(pixels[test][:, best, None] - means[:, best][None]).argmin(-1)
    assert (test_pred == labels[test]).mean() < 0.45
