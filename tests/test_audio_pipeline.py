import os

import numpy as np
import pytest
import tensorflow as tf

from audio_helpers import FEATURES, RATE, broken_wav, peak_frequency, tone, write_wav
from tfft.modalities.audio.pipeline import AUDIO_EXTENSIONS, AudioFeatures, audio_datasets, load_audio
from tfft.errors import DataError

FRAMES = AudioFeatures(**FEATURES).frames


def _tree(root, seconds=0.25, per_class=4, rate=RATE):
    """Two classes of noisy tones: 'high' at 2 kHz, 'low' at 500 Hz."""
    for name, freq in (("high", 2000), ("low", 500)):
        for i in range(per_class):
            rng = np.random.default_rng([freq, i])
            clip = tone(freq, rate, seconds, phase=i) + 0.05 * rng.standard_normal(
                int(round(rate * seconds))
            )
            write_wav(os.path.join(root, name, f"{name}_{i}.wav"), clip, rate)
    return str(root)


def _batches(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


# --- crop and pad ----------------------------------------------------------------------


def test_training_crops_change_every_epoch_and_validation_is_centred(tmp_path):
    root = _tree(tmp_path / "data", seconds=0.5)
    data = audio_datasets(root, **FEATURES, batch_size=8, seed=1)

    first, labels = _batches(data.epoch(0))
    second, _ = _batches(data.epoch(1))
    assert first.shape == (data.num_train, FRAMES, 16, 1)
    # Random crops: no spectrogram of the first epoch comes back in the second.
    assert not any(np.allclose(a, b) for a in first for b in second)

    val_a, _ = _batches(data.validation)
    val_b, _ = _batches(data.validation)
    np.testing.assert_array_equal(val_a, val_b)

    examples = list(data.validation_examples.as_numpy_iterator())
    assert len(examples) == data.num_validation
    samples = AudioFeatures(**FEATURES).samples
    for (waveform, label), val_path in zip(examples, _validation_paths(root, data)):
        full = load_audio(val_path, RATE)
        start = (len(full) - samples) // 2
        np.testing.assert_array_equal(waveform, full[start : start + samples])


def _validation_paths(root, data):
    """Validation files in validation order, rebuilt from the split the pipeline uses."""
    from tfft.data import sources

    paths, labels, _ = sources.list_class_folders(root, AUDIO_EXTENSIONS)
    _, val_idx = sources.stratified_split(labels, 0.2, 1)
    return [paths[i] for i in val_idx]


def test_short_clips_are_padded_to_the_duration(tmp_path):
    root = _tree(tmp_path / "data", seconds=0.1)
    data = audio_datasets(root, **FEATURES, batch_size=8)
    x, _ = _batches(data.train)
    assert x.shape[1:] == (FRAMES, 16, 1)
    waveform, _ = next(iter(data.validation_examples))
    samples = AudioFeatures(**FEATURES).samples
    assert waveform.shape == (samples,)
    pad = (samples - 800) // 2
    assert np.all(waveform[:pad] == 0) and np.all(waveform[pad + 800 :] == 0)
    assert np.any(waveform[pad : pad + 800] != 0)


# --- normalisation and preprocessing ---------------------------------------------------


def test_example_normalisation_gives_zero_mean_unit_std(tmp_path):
    data = audio_datasets(_tree(tmp_path / "data"), **FEATURES, normalize="example")
    x, _ = _batches(data.train)
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_dataset_normalisation_uses_training_statistics_per_mel_band(tmp_path):
    root = _tree(tmp_path / "data")
    raw = audio_datasets(root, **FEATURES, normalize=None)
    scaled = audio_datasets(root, **FEATURES, normalize="dataset")

    train_raw, _ = _batches(raw.train)
    mean = train_raw.mean(axis=(0, 1), keepdims=True)
    std = train_raw.std(axis=(0, 1), keepdims=True)
    train_scaled, _ = _batches(scaled.train)
    np.testing.assert_allclose(train_scaled.mean(axis=(0, 1)), 0.0, atol=1e-3)
    np.testing.assert_allclose(train_scaled.std(axis=(0, 1)), 1.0, atol=1e-3)
    # Validation is scaled with the training statistics, not its own.
    val_raw, _ = _batches(raw.validation)
    val_scaled, _ = _batches(scaled.validation)
    np.testing.assert_allclose(val_scaled, (val_raw - mean) / std, atol=1e-3)


def test_preprocess_runs_last_on_both_splits(tmp_path):
    def three_channels(x):
        return tf.repeat(x, 3, axis=-1)

    data = audio_datasets(
        _tree(tmp_path / "data"), **FEATURES, preprocess=three_channels,
        augment=dict(time_mask=1, time_mask_width=3),
    )
    assert data.train.element_spec[0].shape[1:] == (FRAMES, 16, 3)
    x, _ = _batches(data.validation)
    assert x.shape[1:] == (FRAMES, 16, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


# --- augmentation ----------------------------------------------------------------------


def test_augmentation_only_touches_training_batches(tmp_path):
    root = _tree(tmp_path / "data")
    everything = dict(
        time_mask=2, time_mask_width=4, freq_mask=1, freq_mask_width=3,
        noise_snr_db=10, shift=0.1, gain_db=6,
    )
    plain = audio_datasets(root, **FEATURES, seed=2)
    augmented = audio_datasets(root, **FEATURES, seed=2, augment=everything)

    val_plain, _ = _batches(plain.validation)
    val_first, _ = _batches(augmented.validation)
    val_second, _ = _batches(augmented.validation)
    np.testing.assert_array_equal(val_first, val_plain)
    np.testing.assert_array_equal(val_first, val_second)

    first, labels = _batches(augmented.epoch(0))
    second, _ = _batches(augmented.epoch(1))
    assert not any(np.allclose(a, b) for a in first for b in second)
    # Masked bins are exactly zero: whole frames and whole mel bands.
    for spectrogram in first[..., 0]:
        zero_frames = np.all(spectrogram == 0, axis=1).sum()
        zero_bands = np.all(spectrogram == 0, axis=0).sum()
        assert zero_frames <= 8 and zero_bands <= 3
    assert any(np.all(s == 0, axis=1).any() for s in first[..., 0])


def test_gain_in_the_pipeline_shifts_the_log_mel(tmp_path):
    # The clips are exactly `duration` long, so the random crop keeps them whole and the
    # raw log-mel of a clip scaled by g is the clean one plus log(g).
    root = _tree(tmp_path / "data")
    clean = audio_datasets(root, **FEATURES, normalize=None, seed=4)
    gained = audio_datasets(
        root, **FEATURES, normalize=None, seed=4, augment=dict(gain_db=6)
    )
    clean_x, clean_y = _batches(clean.train)
    gained_x, gained_y = _batches(gained.train)
    offsets = []
    for x, y in zip(gained_x, gained_y):
        matches = [
            np.median(x - c) for c, cy in zip(clean_x, clean_y)
            if cy == y and np.allclose(x - c, np.median(x - c), atol=1e-2)
        ]
        assert len(matches) == 1
        offsets.append(matches[0] * 20 / np.log(10))  # back to dB
    assert max(np.abs(offsets)) <= 6.01 and np.std(offsets) > 1


def test_same_seed_gives_the_same_training_batches(tmp_path):
    root = _tree(tmp_path / "data")
    kwargs = dict(**FEATURES, seed=5, augment=dict(time_mask=1, noise_snr_db=15, shift=0.2))
    a, _ = _batches(audio_datasets(root, **kwargs).train)
    b, _ = _batches(audio_datasets(root, **kwargs).train)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "augment, expected",
    [
        (dict(pitch=2), r"Unknown augment keys \['pitch'\]; valid keys are \['time_mask',"),
        (dict(time_mask=1, time_mask_width=1000), "wider than the 30 spectrogram frames"),
        (dict(freq_mask=1, freq_mask_width=17), "wider than the 16 mel bands"),
        (dict(time_mask=-1), "must be an int >= 0"),
        (dict(noise_snr_db=(30, 10)), "low <= high"),
        (dict(shift=1.5), "shift'] must be a number >= 0 and < 1"),
        ("strong", "augment must be None, True or a dict"),
    ],
)
def test_bad_augment_settings_are_explained(tmp_path, augment, expected):
    with pytest.raises(DataError, match=expected):
        audio_datasets(tmp_path / "nowhere", **FEATURES, augment=augment)


# --- sources, checks and caching -------------------------------------------------------


def test_unreadable_files_raise_one_error_naming_the_first(tmp_path):
    root = _tree(tmp_path / "data")
    high = tmp_path / "data" / "high"
    os.replace(broken_wav(high, "truncated"), high / "a.wav")
    broken_wav(tmp_path / "data" / "low", "alaw")

    with pytest.raises(DataError) as info:
        audio_datasets(root, **FEATURES)

    message = str(info.value)
    assert message.startswith("2 of 10 audio files cannot be read, first: ")
    assert os.path.join(root, "high", "a.wav") in message
    assert "verify=False" in message


@pytest.mark.slow  # a run that reaches the bad file: 21 s beside other work
def test_without_verify_a_bad_file_fails_when_read_naming_it(tmp_path):
    root = _tree(tmp_path / "data")
    broken_wav(tmp_path / "data" / "low", "not_riff")
    data = audio_datasets(root, **FEATURES, verify=False, batch_size=16)
    with pytest.raises(tf.errors.OpError, match="not_riff.wav is not a WAV file"):
        _batches(data.train)
        _batches(data.validation)


def test_manifest_end_to_end(tmp_path):
    root = _tree(tmp_path / "clips")
    rows = ["path,label"]
    for name in ("high", "low"):
        for i in range(4):
            rows.append(f"clips/{name}/{name}_{i}.wav,{name}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")

    data = audio_datasets(
        manifest=tmp_path / "train.csv", **FEATURES, class_weights="balanced"
    )

    assert data.class_names == ["high", "low"]
    assert (data.num_train, data.num_validation) == (6, 2)
    assert data.class_weights == {0: 1.0, 1: 1.0}
    x, y = _batches(data.validation)
    assert x.shape == (2, FRAMES, 16, 1) and sorted(y) == [0, 1]
    assert all(os.path.isfile(os.path.join(root, n)) for n in ("high/high_0.wav",))


def test_validation_path_and_mixed_rates_and_layouts(tmp_path):
    train = _tree(tmp_path / "train")
    val = tmp_path / "val"
    write_wav(str(val / "high" / "a.wav"), np.stack([tone(2000, 44100)] * 2, 1), 44100,
           bits=24)
    write_wav(
        str(val / "low" / "b.wav"), tone(500, 16000), 16000, bits=32, encoding="float"
    )

    data = audio_datasets(train, validation_path=val, **FEATURES)

    assert (data.num_train, data.num_validation) == (8, 2)
    waves = [w for w, _ in data.validation_examples.as_numpy_iterator()]
    assert [round(peak_frequency(w, RATE)) for w in waves] == [2000, 500]


def test_file_cache_replays_the_same_waveforms(tmp_path):
    root = _tree(tmp_path / "data")
    prefix = str(tmp_path / "cache" / "clips")
    data = audio_datasets(root, **FEATURES, cache=prefix)
    first, _ = _batches(data.validation)
    second, _ = _batches(data.validation)
    np.testing.assert_array_equal(first, second)
    written = os.listdir(tmp_path / "cache")
    assert any(name.startswith("clips-audio-validation-") for name in written)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(), "Pass exactly one of `path`"),
        (dict(path="x", validation_split=1.0), "validation_split must be strictly"),
        (dict(path="x", normalize="global"), "normalize must be 'example'"),
        (dict(path="x", cache=3), "cache must be True"),
        (dict(path="x", batch_size=0), "batch_size must be a positive int"),
        (dict(path="x", preprocess="resnet"), "preprocess must be a callable"),
    ],
)
def test_bad_arguments_fail_before_reading_anything(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        audio_datasets(**kwargs)
