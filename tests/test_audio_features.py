import numpy as np
import pytest
import tensorflow as tf

from audio_helpers import tone
from tfft.modalities.audio.features import AudioFeatures, crop_or_pad, log_mel
from tfft.errors import DataError


# --- crop and pad ----------------------------------------------------------------------


def test_centre_crop_and_centre_pad():
    long = tf.range(10, dtype=tf.float32)
    np.testing.assert_array_equal(crop_or_pad(long, 4).numpy(), [3, 4, 5, 6])
    short = tf.constant([1.0, 2.0])
    np.testing.assert_array_equal(crop_or_pad(short, 6).numpy(), [0, 0, 1, 2, 0, 0])
    np.testing.assert_array_equal(crop_or_pad(long, 10).numpy(), long.numpy())


def test_random_crop_and_pad_positions_cover_the_range():
    long = tf.range(10, dtype=tf.float32)
    starts = {
        int(crop_or_pad(long, 4, seed=tf.constant(s, tf.int64)).numpy()[0])
        for s in range(60)
    }
    assert starts == set(range(7))
    short = tf.constant([1.0, 2.0])
    offsets = set()
    for s in range(60):
        out = crop_or_pad(short, 5, seed=tf.constant(s, tf.int64)).numpy()
        assert out.shape == (5,) and sorted(out)[-2:] == [1.0, 2.0]
        offsets.add(int(np.argmax(out == 1.0)))
    assert offsets == {0, 1, 2, 3}


# --- features --------------------------------------------------------------------------


def test_feature_shape_matches_the_spectrogram():
    features = AudioFeatures(sample_rate=16000, duration=1.0)
    assert features.samples == 16000
    assert features.shape == (97, 64, 1)
    assert features.log_mel(tf.zeros([2, 16000])).shape == (2, *features.shape)


def _mel_centres(n_mels, f_min, f_max):
    # The HTK mel scale of tf.signal.linear_to_mel_weight_matrix.
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    edges = np.linspace(mel(f_min), mel(f_max), n_mels + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0])
def test_a_tone_puts_its_energy_in_the_nearest_mel_band(freq):
    spectrogram = log_mel(
        tone(freq, 16000, 0.5)[None].astype(np.float32), 16000, 512, 160, 40, 20.0, 8000.0
    ).numpy()

    assert spectrogram.shape == (1, 1 + (8000 - 512) // 160, 40, 1)
    band = np.argmax(spectrogram[0, :, :, 0].mean(axis=0))
    assert band == np.argmin(np.abs(_mel_centres(40, 20.0, 8000.0) - freq))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(duration=0.01), "fewer than one STFT window"),
        (dict(f_max=9000.0), "at most at the Nyquist frequency 8000"),
        (dict(f_min=8000.0), "f_min must be a number >= 0 and < 8000"),
        (dict(n_mels=0), "n_mels must be a positive int"),
        (dict(sample_rate=16000.5), "sample_rate must be a positive int"),
    ],
)
def test_bad_feature_settings_are_explained(kwargs, expected):
    with pytest.raises(DataError, match=expected):
        AudioFeatures(**{"sample_rate": 16000, **kwargs})
