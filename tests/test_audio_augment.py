import numpy as np
import pytest
import tensorflow as tf

from audio_helpers import FEATURES, tone
from tfft.modalities.audio.augment import AudioAugment, build_audio_augment
from tfft.modalities.audio.features import AudioFeatures


def _seed(value):
    return tf.constant(value, tf.int64)


def test_masks_zero_bands_no_wider_than_the_maximum():
    augment = AudioAugment(time_mask=1, time_mask_width=5, freq_mask=1, freq_mask_width=3)
    widths = set()
    for s in range(40):
        time_keep, freq_keep = augment.mask_keep(_seed(s), 20, 10)
        for keep, limit in ((time_keep.numpy(), 5), (freq_keep.numpy(), 3)):
            zeros = np.flatnonzero(keep == 0)
            assert set(np.unique(keep)) <= {0.0, 1.0}
            assert len(zeros) <= limit
            if len(zeros):
                assert zeros[-1] - zeros[0] + 1 == len(zeros)  # one contiguous band
        widths.add(int(np.sum(time_keep.numpy() == 0)))
    assert widths == set(range(6))


def test_snr_of_added_noise_matches_the_setting():
    clean = tf.constant(tone(440, seconds=1.0), tf.float32)
    for snr in (0.0, 10.0, 25.0):
        noisy = AudioAugment(noise_snr_db=(snr, snr)).waveform(clean, _seed(3)).numpy()
        noise = noisy - clean.numpy()
        measured = 10 * np.log10(np.mean(clean.numpy() ** 2) / np.mean(noise**2))
        assert measured == pytest.approx(snr, abs=1.0)
    drawn = []
    for s in range(20):
        noise = AudioAugment(noise_snr_db=(10, 20)).waveform(clean, _seed(s)) - clean
        power_ratio = np.mean(clean.numpy() ** 2) / np.mean(noise.numpy() ** 2)
        drawn.append(10 * np.log10(power_ratio))
    assert 9 < min(drawn) < max(drawn) < 21 and max(drawn) - min(drawn) > 3


def test_gain_stays_within_the_stated_decibels():
    clean = tf.constant(tone(440, seconds=0.1), tf.float32)
    gains = []
    for s in range(30):
        out = AudioAugment(gain_db=6).waveform(clean, _seed(s)).numpy()
        loud = np.abs(clean.numpy()) > 0.1
        ratio = out[loud] / clean.numpy()[loud]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        gains.append(20 * np.log10(ratio[0]))
    assert -6 <= min(gains) < -2 and 2 < max(gains) <= 6


def test_shift_moves_the_clip_and_fills_with_zeros():
    clean = tf.constant(np.arange(1, 101, dtype=np.float32))
    shifts = set()
    for s in range(30):
        out = AudioAugment(shift=0.1).waveform(clean, _seed(s)).numpy()
        offset = int(np.argmax(out == 1.0)) if out[0] == 0 else -int(out[0] - 1)
        assert -10 <= offset <= 10
        np.testing.assert_array_equal(out, np.roll(clean.numpy(), offset) * _inside(offset))
        shifts.add(offset)
    assert len(shifts) > 8 and min(shifts) < 0 < max(shifts)


def _inside(offset, length=100):
    keep = np.ones(length, np.float32)
    if offset > 0:
        keep[:offset] = 0
    elif offset < 0:
        keep[offset:] = 0
    return keep


def test_default_augmentation_builds_every_step():
    built = build_audio_augment(True, AudioFeatures(**FEATURES))
    # No added noise unless asked for: it hurt on clean real speech (docs/benchmarks.md).
    assert built == AudioAugment(2, 10, 2, 8, None, 0.1, 6.0)
    noisy = build_audio_augment(dict(noise_snr_db=20), AudioFeatures(**FEATURES))
    assert noisy == AudioAugment(noise_snr_db=(20.0, 20.0))
    assert build_audio_augment(dict(gain_db=0), AudioFeatures(**FEATURES)) is None
