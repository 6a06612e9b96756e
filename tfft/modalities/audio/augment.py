"""Training-time audio augmentation: time shift, gain, white noise and SpecAugment masks.

`build_audio_augment` checks an `augment` setting (None, True for `DEFAULT_AUGMENT`, or a
dict of its keys) against the spectrogram it will mask and returns an `AudioAugment`, or
None when nothing is on. Every draw is a stateless random op seeded by the example's own
seed, so an example's augmentation is reproducible whatever the order of parallel calls in
`tf.data`. Shift, gain and noise change the fixed-length waveform; the masks come back as
keep-vectors that the pipeline in `tfft/modalities/audio/pipeline.py` multiplies into the normalised
spectrogram batch, so a masked bin is 0, the mean after normalisation.
"""

import dataclasses
import numbers
from typing import Optional

import tensorflow as tf

from tfft.data.checks import augment_settings, number, positive_int
from tfft.errors import DataError
from tfft.modalities.audio.features import _randint, _seed
from tfft.modalities.audio.keys import DEFAULT_AUGMENT


def _band_keep(seed, stream, size, count, max_width):
    """1.0 everywhere except `count` bands of 0..max_width positions each, set to 0.0."""
    positions = tf.range(size)
    keep = tf.ones([size], tf.float32)
    for i in range(count):
        width = _randint(seed, stream + 2 * i, 0, max_width)
        start = _randint(seed, stream + 2 * i + 1, 0, size - width)
        band = (positions >= start) & (positions < start + width)
        keep = keep * (1.0 - tf.cast(band, tf.float32))
    return keep


@dataclasses.dataclass(frozen=True)
class AudioAugment:
    """Training-time augmentation of waveforms and spectrograms, drawn from seeds.

    Every draw is a stateless random op seeded by the example's seed, so an example's
    augmentation depends only on that seed, whatever the order of parallel calls.

    Args:
        time_mask: number of SpecAugment time masks per example.
        time_mask_width: largest time mask, in spectrogram frames; each mask's width is
            drawn from 0..time_mask_width.
        freq_mask: number of SpecAugment frequency masks per example.
        freq_mask_width: largest frequency mask, in mel bands.
        noise_snr_db: None, a signal-to-noise ratio in dB for added white noise, or a
            `(low, high)` range to draw it from. The noise power follows each clip's own
            power, measured after shift and gain.
        shift: largest time shift as a fraction of the clip; the clip moves by a whole
            number of samples and the gap is filled with zeros.
        gain_db: largest gain change in dB, drawn from `[-gain_db, gain_db]`.

    Example:
        >>> augment = AudioAugment(noise_snr_db=20, gain_db=6)
        >>> augment.waveform(tf.ones([100]), tf.constant(7, tf.int64)).shape
        TensorShape([100])
    """

    time_mask: int = 0
    time_mask_width: int = DEFAULT_AUGMENT["time_mask_width"]
    freq_mask: int = 0
    freq_mask_width: int = DEFAULT_AUGMENT["freq_mask_width"]
    noise_snr_db: Optional[tuple] = None
    shift: float = 0.0
    gain_db: float = 0.0

    @property
    def masks(self):
        """Whether any SpecAugment mask is on."""
        return self.time_mask > 0 or self.freq_mask > 0

    def waveform(self, waveform, seed):
        """Shift, gain and noise for one fixed-length waveform `[samples]`."""
        length = waveform.shape[0]
        if self.shift:
            limit = int(self.shift * length)
            offset = _randint(seed, 1, -limit, limit)
            padded = tf.pad(waveform, [[limit, limit]])
            waveform = padded[limit - offset : limit - offset + length]
        if self.gain_db:
            gain = tf.random.stateless_uniform(
                [], _seed(seed, 2), -self.gain_db, self.gain_db
            )
            waveform = waveform * tf.pow(10.0, gain / 20.0)
        if self.noise_snr_db is not None:
            low, high = self.noise_snr_db
            snr = tf.random.stateless_uniform([], _seed(seed, 3), low, high)
            power = tf.reduce_mean(tf.square(waveform))
            scale = tf.sqrt(power / tf.pow(10.0, snr / 10.0))
            noise = tf.random.stateless_normal(tf.shape(waveform), _seed(seed, 4))
            waveform = waveform + scale * noise
        return waveform

    def mask_keep(self, seed, frames, n_mels):
        """`(time_keep [frames], freq_keep [n_mels])`: 0.0 inside masks, 1.0 elsewhere."""
        # Separate stream ranges, so time and frequency masks never share a draw.
        time_keep = _band_keep(seed, 1 << 20, frames, self.time_mask, self.time_mask_width)
        freq_keep = _band_keep(seed, 2 << 20, n_mels, self.freq_mask, self.freq_mask_width)
        return time_keep, freq_keep


def _count(augment, key):
    value = augment.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise DataError(
            f"augment['{key}'] must be an int >= 0. Received: {key}={value!r}"
        )
    return int(value)


def build_audio_augment(augment, features):
    """Check an `augment` setting against the features and build an `AudioAugment`.

    Args:
        augment: None or False for none; True for `DEFAULT_AUGMENT`; or a dict with any of
            its keys. Missing counts and amounts are off; missing mask widths take their
            default.
        features: the `AudioFeatures`, to check mask widths against the spectrogram.

    Returns:
        An `AudioAugment`, or None when nothing is on.

    Example:
        >>> build_audio_augment(dict(time_mask=2, gain_db=6), AudioFeatures()).time_mask
        2
    """
    augment = augment_settings(augment, DEFAULT_AUGMENT)
    if augment is None:
        return None
    settings = {}
    for count_key, size, axis in (
        ("time_mask", features.frames, "spectrogram frames"),
        ("freq_mask", features.n_mels, "mel bands"),
    ):
        width_key = count_key + "_width"
        settings[count_key] = _count(augment, count_key)
        width = augment.get(width_key, DEFAULT_AUGMENT[width_key])
        width = positive_int(f"augment['{width_key}']", width)
        if settings[count_key] and width > size:
            raise DataError(
                f"augment['{width_key}']={width} is wider than the {size} {axis} of the "
                f"spectrogram; lower it. Received: {width_key}={width}"
            )
        settings[width_key] = width
    snr = augment.get("noise_snr_db")
    if snr is not None:
        pair = tuple(snr) if isinstance(snr, (tuple, list)) else (snr, snr)
        if len(pair) != 2:
            raise DataError(
                "augment['noise_snr_db'] must be a number of dB or a (low, high) pair. "
                f"Received: noise_snr_db={snr!r}"
            )
        low, high = (number("augment['noise_snr_db']", v) for v in pair)
        if low > high:
            raise DataError(
                "augment['noise_snr_db'] range must be (low, high) with low <= high. "
                f"Received: noise_snr_db={snr!r}"
            )
        settings["noise_snr_db"] = (low, high)
    settings["shift"] = number("augment['shift']", augment.get("shift") or 0.0, 0, 1)
    settings["gain_db"] = number("augment['gain_db']", augment.get("gain_db") or 0.0, 0)
    built = AudioAugment(**settings)
    if not (built.masks or snr is not None or built.shift or built.gain_db):
        return None
    return built
