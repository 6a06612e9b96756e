"""Audio features: fixed-length clips and log-mel spectrograms.

`AudioFeatures` holds the settings that fix the shape a model sees (rate, duration, STFT
and mel bands) and checks them together, so a bad combination fails before any file is
read. `log_mel` turns a batch of waveforms into spectrograms shaped like one-channel
images, `crop_or_pad` gives every clip the same length, centred or at a seeded random
position, and the normalisation helpers scale spectrograms per example or per mel band
with statistics of the training split. These run as TensorFlow ops inside the `tf.data`
pipeline, after decoding (`tfft/modalities/audio/decode.py`) and the cache. The seeded draws `_seed` and
`_randint` are shared with `tfft/modalities/audio/augment.py`, so a training crop and its
augmentation come from the same per-example seed.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from tfft.data.checks import number, positive_int
from tfft.errors import DataError

_LOG_OFFSET = 1e-6


@dataclasses.dataclass(frozen=True)
class AudioFeatures:
    """Settings that turn a waveform into a log-mel spectrogram, and the shape they give.

    Args:
        sample_rate: rate in Hz every clip is resampled to.
        duration: clip length in seconds after cropping or padding.
        n_fft: STFT window and FFT length in samples.
        hop_length: STFT step in samples.
        n_mels: number of mel bands.
        f_min: lowest mel band edge in Hz.
        f_max: highest mel band edge in Hz; None for `sample_rate / 2`.

    Example:
        >>> AudioFeatures(sample_rate=16000, duration=1.0).shape
        (97, 64, 1)
    """

    sample_rate: int = 16000
    duration: float = 1.0
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: Optional[float] = None

    def __post_init__(self):
        positive_int("sample_rate", self.sample_rate)
        number("duration", self.duration, minimum=0)
        positive_int("n_fft", self.n_fft)
        positive_int("hop_length", self.hop_length)
        positive_int("n_mels", self.n_mels)
        nyquist = self.sample_rate / 2
        number("f_min", self.f_min, minimum=0, below=nyquist)
        if self.f_max is not None:
            number("f_max", self.f_max)
            if not self.f_min < self.f_max <= nyquist:
                raise DataError(
                    f"f_max must lie above f_min={self.f_min} and at most at the Nyquist "
                    f"frequency {nyquist:g} Hz of sample_rate={self.sample_rate}. "
                    f"Received: f_max={self.f_max!r}"
                )
        if self.samples < self.n_fft:
            raise DataError(
                f"duration={self.duration} s gives {self.samples} samples at "
                f"{self.sample_rate} Hz, fewer than one STFT window of n_fft={self.n_fft}; "
                f"lengthen the clips or lower n_fft. Received: duration={self.duration!r}"
            )

    @property
    def samples(self):
        """Samples per clip."""
        return int(round(self.sample_rate * self.duration))

    @property
    def frames(self):
        """Spectrogram time steps per clip."""
        return 1 + (self.samples - self.n_fft) // self.hop_length

    @property
    def shape(self):
        """Shape of one spectrogram: `(frames, n_mels, 1)`."""
        return (self.frames, self.n_mels, 1)

    def log_mel(self, waveform_batch):
        """`log_mel` with these settings."""
        return log_mel(
            waveform_batch,
            self.sample_rate,
            self.n_fft,
            self.hop_length,
            self.n_mels,
            self.f_min,
            self.f_max,
        )


def log_mel(
    waveform_batch,
    sample_rate,
    n_fft=512,
    hop_length=160,
    n_mels=64,
    f_min=20.0,
    f_max=None,
):
    """Log-mel spectrograms of a batch of waveforms, shaped like one-channel images.

    STFT with a periodic Hann window (no padding at the ends), magnitude, a triangular mel
    filterbank (`tf.signal.linear_to_mel_weight_matrix`), then `log(x + 1e-6)`.

    Args:
        waveform_batch: float32 tensor `[batch, samples]`.
        sample_rate: rate of the waveforms in Hz.
        n_fft: window and FFT length in samples.
        hop_length: step between windows in samples.
        n_mels: number of mel bands.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz; None for `sample_rate / 2`.

    Returns:
        float32 tensor `[batch, 1 + (samples - n_fft) // hop_length, n_mels, 1]`.

    Example:
        >>> log_mel(tf.zeros([2, 16000]), 16000).shape
        TensorShape([2, 97, 64, 1])
    """
    waveform_batch = tf.convert_to_tensor(waveform_batch, tf.float32)
    stft = tf.signal.stft(
        waveform_batch, frame_length=n_fft, frame_step=hop_length, fft_length=n_fft
    )
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=n_mels,
        num_spectrogram_bins=n_fft // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=float(f_min),
        upper_edge_hertz=float(f_max if f_max is not None else sample_rate / 2),
    )
    mel = tf.matmul(tf.abs(stft), weights)
    # expand_dims rather than `[..., tf.newaxis]`, whose strided slice TFLite cannot take.
    return tf.expand_dims(tf.math.log(mel + _LOG_OFFSET), -1)


def statistics_tensors(statistics, n_mels):
    """`Datasets.statistics` (per-band `mean` and `std` lists) as the `[1, 1, n_mels, 1]`
    tensors that `normalized_log_mel` takes."""
    shape = (1, 1, n_mels, 1)
    return tuple(tf.constant(np.reshape(statistics[k], shape), tf.float32) for k in ("mean", "std"))


def normalized_log_mel(waveforms, features, normalize, mean=None, std=None):
    """Log-mel spectrograms of `[batch, samples]` waveforms, normalised as `normalize` says
    (`"example"`, `"dataset"` with the training split's `mean` and `std`, or None): the
    step the pipelines and an exported model share."""
    spectrogram = features.log_mel(waveforms)
    spectrogram.set_shape([None, *features.shape])
    if normalize == "example":
        return _normalize_example(spectrogram)
    if normalize == "dataset":
        return (spectrogram - mean) / std
    return spectrogram


def _normalize_example(spectrogram):
    mean, variance = tf.nn.moments(spectrogram, axes=[1, 2, 3], keepdims=True)
    return (spectrogram - mean) * tf.math.rsqrt(variance + 1e-12)


def _dataset_statistics(waveforms, features, batch_size):
    """Per-mel-band mean and (floored) standard deviation of the log-mel of `waveforms`."""
    total, total_sq, count = 0.0, 0.0, 0
    batches = waveforms.batch(batch_size).map(
        lambda x: features.log_mel(x), num_parallel_calls=tf.data.AUTOTUNE
    )
    for spectrogram in batches.as_numpy_iterator():
        values = spectrogram[..., 0].astype(np.float64).reshape(-1, features.n_mels)
        total = total + values.sum(axis=0)
        total_sq = total_sq + np.square(values).sum(axis=0)
        count += values.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    # A band that barely varies in training (empty above a low-pass cutoff, or digital
    # silence) would otherwise blow up any augmentation or test clip that reaches it.
    pooled = np.sqrt(np.mean(np.square(std)))
    std = np.maximum(std, max(0.1 * pooled, 1e-6))
    shape = (1, 1, features.n_mels, 1)
    return (
        tf.constant(mean.reshape(shape), tf.float32),
        tf.constant(std.reshape(shape), tf.float32),
    )


# --- cropping --------------------------------------------------------------------------


def _seed(seed, stream):
    """A stateless seed for one random draw: the example's seed and a fixed stream id."""
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])


def _randint(seed, stream, low, high):
    """One integer drawn uniformly from [low, high] (both included)."""
    return tf.random.stateless_uniform(
        [], _seed(seed, stream), minval=low, maxval=high + 1, dtype=tf.int32
    )


def crop_or_pad(waveform, length, seed=None):
    """Cut or zero-pad a waveform to exactly `length` samples.

    A longer clip keeps a window of `length` samples and a shorter one is zero-padded on
    both sides. Without `seed` the window (or the clip inside the padding) is centred;
    with a seed its position is drawn uniformly, as for training.

    Args:
        waveform: float32 tensor `[samples]`.
        length: wanted number of samples.
        seed: None for centring, or an int64 scalar tensor for a random position.

    Returns:
        float32 tensor `[length]`.

    Example:
        >>> crop_or_pad(tf.ones([5]), 3).numpy()
        array([1., 1., 1.], dtype=float32)
    """
    slack = tf.shape(waveform)[0] - length
    room = tf.abs(slack)
    position = room // 2 if seed is None else _randint(seed, 0, 0, room)
    short = slack < 0
    pad_left = tf.where(short, position, 0)
    pad_right = tf.where(short, room - position, 0)
    start = tf.where(short, 0, position)
    padded = tf.pad(waveform, [[pad_left, pad_right]])
    out = padded[start : start + length]
    out.set_shape([length])
    return out
