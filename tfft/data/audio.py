"""Audio classification datasets: WAV clips in, log-mel spectrograms out.

`audio_datasets` lists and splits the files (`tfft/data/sources.py`), checks every WAV
header, and builds `tf.data` pipelines that decode, mix to mono, resample, cache, crop or
pad to a fixed duration, augment (training only), and turn each batch into a log-mel
spectrogram shaped like a one-channel image, `[batch, time, n_mels, 1]`.

Why decoding runs in numpy: `tf.audio.decode_wav` reads 16-bit PCM only (it rejects 8-,
24- and 32-bit PCM and IEEE float with "Can only read 16-bit WAV files"), and TensorFlow
ships no resampler. `read_wav` parses every common WAV layout with `numpy.frombuffer`,
and `resample` runs `scipy.signal.resample_poly`; both run once per file through
`tf.numpy_function` and the result is cached, so their cost is paid in the first epoch.

Why a custom resampling filter: `resample_poly`'s default filter puts its cutoff at the
new Nyquist frequency with a wide transition, so a 9 kHz tone resampled from 44.1 kHz to
16 kHz leaves an alias at 7 kHz only about 30 dB down. The Kaiser filter here reaches
80 dB at the lower Nyquist frequency and passes everything below 90% of it unchanged.
"""

import dataclasses
import functools
import hashlib
import math
import numbers
import os
import struct
from typing import Optional

import numpy as np
import scipy.signal
import tensorflow as tf

from tfft.data import sources
from tfft.data.datasets import Datasets
from tfft.errors import DataError

AUDIO_EXTENSIONS = (".wav",)

# The augmentation `augment=True` stands for; also the full list of valid `augment` keys.
DEFAULT_AUGMENT = dict(
    time_mask=2,
    time_mask_width=10,
    freq_mask=2,
    freq_mask_width=8,
    noise_snr_db=20,
    shift=0.1,
    gain_db=6,
)

_SUPPORTED = "8-bit unsigned PCM, 16-, 24- or 32-bit PCM, or 32- or 64-bit IEEE float"
_CONVERT = "convert it, e.g. `ffmpeg -i in.wav -c:a pcm_s16le out.wav`"
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_FORMAT_NAMES = {
    2: "Microsoft ADPCM",
    6: "A-law",
    7: "mu-law",
    0x11: "IMA ADPCM",
    0x31: "GSM 6.10",
    0x55: "MP3",
}
# Every WAVE_FORMAT_EXTENSIBLE sub-format GUID ends with these 14 bytes; the first two
# hold the plain format code.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_LOG_OFFSET = 1e-6
_STOPBAND_DB = 80.0
_PASSBAND = 0.9  # share of the lower Nyquist frequency that the resampler leaves untouched


# --- WAV files ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WavInfo:
    """What a WAV header says about its audio.

    Args:
        sample_rate: frames per second.
        channels: samples per frame.
        bits: bits per stored sample (the container size).
        encoding: `"pcm"` (integers) or `"float"` (IEEE float).
        frames: number of complete frames in the data chunk.
        data_offset: byte offset of the first sample in the file.

    Example:
        >>> wav_info("clip.wav").duration
        1.0
    """

    sample_rate: int
    channels: int
    bits: int
    encoding: str
    frames: int
    data_offset: int

    @property
    def duration(self):
        """Length of the clip in seconds."""
        return self.frames / self.sample_rate


def _parse_fmt(path, body):
    if len(body) < 16:
        raise DataError(
            f"{path} has a corrupt WAV header: its 'fmt ' chunk is {len(body)} bytes, "
            f"expected at least 16. Re-export the file. Received: path='{path}'"
        )
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE:
        if len(body) < 40 or body[26:40] != _GUID_TAIL:
            raise DataError(
                f"{path} is a WAVE_FORMAT_EXTENSIBLE file with an unknown sub-format; "
                f"supported: {_SUPPORTED}; {_CONVERT}. Received: path='{path}'"
            )
        # Samples narrower than their container (20 bits in 24) are stored left-aligned,
        # so decoding the full container gives the right values.
        tag = struct.unpack("<H", body[24:26])[0]
    supported = (tag == _PCM and bits in (8, 16, 24, 32)) or (
        tag == _FLOAT and bits in (32, 64)
    )
    if not supported:
        name = {_PCM: "PCM", _FLOAT: "IEEE float"}.get(tag) or _FORMAT_NAMES.get(
            tag, f"format code {tag}"
        )
        raise DataError(
            f"{path} holds {bits}-bit {name} audio, which cannot be decoded; supported: "
            f"{_SUPPORTED}; {_CONVERT}. Received: format={name}, bits_per_sample={bits}"
        )
    if channels < 1 or rate < 1 or block_align != channels * bits // 8:
        raise DataError(
            f"{path} has a corrupt WAV header: {channels} channels at {rate} Hz with "
            f"{bits}-bit samples cannot have {block_align}-byte frames. Re-export the "
            f"file. Received: path='{path}'"
        )
    return ("pcm" if tag == _PCM else "float"), channels, rate, bits, block_align


def wav_info(path):
    """Read and check the header of a WAV file without reading its samples.

    Args:
        path: the WAV file.

    Returns:
        A `WavInfo`.

    Raises:
        DataError: naming the file, when it is not a RIFF/WAVE file, is truncated (no data
            chunk, or a data chunk shorter than declared), holds no samples, or uses an
            encoding other than those `read_wav` decodes.

    Example:
        >>> info = wav_info("clip.wav")
        >>> info.sample_rate, info.channels, info.bits, info.encoding
        (16000, 1, 16, 'pcm')
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise DataError(
                    f"{path} is not a WAV file: it does not start with a RIFF/WAVE "
                    f"header; {_CONVERT}. Received: first bytes={head[:12]!r}"
                )
            fmt = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    break
                chunk_id, chunk_size = struct.unpack("<4sI", chunk)
                start = f.tell()
                if chunk_id == b"fmt ":
                    fmt = _parse_fmt(path, f.read(chunk_size))
                elif chunk_id == b"data" and fmt is not None:
                    if chunk_size > size - start:
                        raise DataError(
                            f"{path} is truncated: its data chunk declares "
                            f"{chunk_size} bytes but only {size - start} follow. "
                            f"Re-export or delete the file. Received: path='{path}'"
                        )
                    encoding, channels, rate, bits, block_align = fmt
                    frames = chunk_size // block_align
                    if frames == 0:
                        raise DataError(
                            f"{path} is a zero-length clip: its data chunk holds no "
                            f"complete frame. Delete the file. Received: path='{path}'"
                        )
                    return WavInfo(rate, channels, bits, encoding, frames, start)
                # Chunks are word-aligned: an odd-sized chunk is followed by a pad byte.
                f.seek(start + chunk_size + (chunk_size & 1))
    except OSError as e:
        raise DataError(
            f"{path} cannot be read ({e.strerror}). Received: path='{path}'"
        ) from None
    missing = "'fmt ' chunk" if fmt is None else "data chunk"
    raise DataError(
        f"{path} is truncated: it has no {missing}. Re-export or delete the file. "
        f"Received: path='{path}'"
    )


def read_wav(path):
    """Decode a WAV file to float samples.

    Handles 8-bit unsigned, 16-, 24- and 32-bit signed PCM, 32- and 64-bit IEEE float,
    plain or WAVE_FORMAT_EXTENSIBLE headers, and any number of channels. Integer samples
    are scaled to [-1, 1); float samples are returned as stored.

    Args:
        path: the WAV file.

    Returns:
        `(samples, sample_rate)`: float32 array `[frames, channels]` and the rate in Hz.

    Raises:
        DataError: naming the file, for every problem `wav_info` reports and for float
            files holding NaN or infinite samples.

    Example:
        >>> samples, rate = read_wav("clip.wav")
        >>> samples.shape, rate
        ((16000, 2), 16000)
    """
    info = wav_info(path)
    block = info.channels * info.bits // 8
    with open(path, "rb") as f:
        f.seek(info.data_offset)
        raw = f.read(info.frames * block)
    if info.encoding == "float":
        samples = np.frombuffer(raw, "<f4" if info.bits == 32 else "<f8")
        samples = samples.astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise DataError(
                f"{path} holds NaN or infinite samples. Re-export the file. "
                f"Received: path='{path}'"
            )
    elif info.bits == 8:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif info.bits == 24:
        # Place the three little-endian bytes in the top of an int32, which keeps the sign.
        padded = np.zeros((len(raw) // 3, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        samples = padded.view("<i4").ravel().astype(np.float32) / 2.0**31
    else:
        dtype = "<i2" if info.bits == 16 else "<i4"
        samples = np.frombuffer(raw, dtype).astype(np.float32) / 2.0 ** (info.bits - 1)
    return samples.reshape(info.frames, info.channels), info.sample_rate


@functools.lru_cache(maxsize=32)
def _resampling_filter(rate_in, rate_out):
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    nyquist = min(rate_in, rate_out) / 2.0
    fs = float(rate_in * up)  # the filter runs at the upsampled rate
    width = (1.0 - _PASSBAND) * nyquist
    numtaps, beta = scipy.signal.kaiserord(_STOPBAND_DB, width / (fs / 2.0))
    numtaps |= 1  # odd length: resample_poly centres a symmetric filter exactly
    taps = scipy.signal.firwin(
        numtaps, nyquist - width / 2.0, window=("kaiser", beta), fs=fs
    )
    return up, down, taps


def resample(samples, rate_in, rate_out):
    """Resample audio along its first axis with a low-aliasing polyphase filter.

    The filter passes everything below 90% of the lower Nyquist frequency unchanged and
    attenuates everything above that Nyquist frequency by at least 80 dB.

    Args:
        samples: array `[frames]` or `[frames, channels]`.
        rate_in: its sample rate in Hz.
        rate_out: the wanted sample rate in Hz.

    Returns:
        A float32 array with `ceil(frames * rate_out / rate_in)` frames.

    Example:
        >>> resample(np.zeros(44100), 44100, 16000).shape
        (16000,)
    """
    samples = np.asarray(samples, np.float32)
    if rate_in == rate_out:
        return samples
    up, down, taps = _resampling_filter(int(rate_in), int(rate_out))
    out = scipy.signal.resample_poly(samples, up, down, axis=0, window=taps)
    return out.astype(np.float32)


def load_audio(path, sample_rate):
    """Read a WAV file as one mono waveform at `sample_rate`.

    Channels are averaged before resampling.

    Args:
        path: the WAV file.
        sample_rate: the wanted rate in Hz.

    Returns:
        float32 array `[samples]`.

    Example:
        >>> load_audio("stereo_44k.wav", 16000).shape
        (16000,)
    """
    samples, rate = read_wav(path)
    return resample(samples.mean(axis=1), rate, sample_rate)


# --- features --------------------------------------------------------------------------


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be a positive int. Received: {name}={value!r}")
    return int(value)


def _number(name, value, minimum=None, below=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (below is None or value < below)
    if not ok:
        bounds = [f">= {minimum}"] if minimum is not None else []
        bounds += [f"< {below}"] if below is not None else []
        wanted = " and ".join(bounds) or "finite"
        raise DataError(f"{name} must be a number {wanted}. Received: {name}={value!r}")
    return float(value)


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
        _positive_int("sample_rate", self.sample_rate)
        _number("duration", self.duration, minimum=0)
        _positive_int("n_fft", self.n_fft)
        _positive_int("hop_length", self.hop_length)
        _positive_int("n_mels", self.n_mels)
        nyquist = self.sample_rate / 2
        _number("f_min", self.f_min, minimum=0, below=nyquist)
        if self.f_max is not None:
            _number("f_max", self.f_max)
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
    waveform_batch, sample_rate, n_fft=512, hop_length=160, n_mels=64, f_min=20.0, f_max=None
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
    return tf.math.log(mel + _LOG_OFFSET)[..., tf.newaxis]


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


# --- cropping and augmentation ---------------------------------------------------------


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
    noise_snr_db: object = None
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
        time_keep = _band_keep(seed, 1000, frames, self.time_mask, self.time_mask_width)
        freq_keep = _band_keep(seed, 2000, n_mels, self.freq_mask, self.freq_mask_width)
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
    if augment is None or augment is False:
        return None
    if augment is True:
        augment = DEFAULT_AUGMENT
    if not isinstance(augment, dict):
        raise DataError(
            f"augment must be None, True or a dict such as {DEFAULT_AUGMENT}. "
            f"Received: augment={augment!r}"
        )
    unknown = sorted(set(augment) - set(DEFAULT_AUGMENT))
    if unknown:
        raise DataError(
            f"Unknown augment keys {unknown}; valid keys are {list(DEFAULT_AUGMENT)}. "
            f"Received: augment={augment!r}"
        )
    settings = {}
    for count_key, size, axis in (
        ("time_mask", features.frames, "spectrogram frames"),
        ("freq_mask", features.n_mels, "mel bands"),
    ):
        width_key = count_key + "_width"
        settings[count_key] = _count(augment, count_key)
        width = augment.get(width_key, DEFAULT_AUGMENT[width_key])
        width = _positive_int(f"augment['{width_key}']", width)
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
        low, high = (_number("augment['noise_snr_db']", v) for v in pair)
        if low > high:
            raise DataError(
                "augment['noise_snr_db'] range must be (low, high) with low <= high. "
                f"Received: noise_snr_db={snr!r}"
            )
        settings["noise_snr_db"] = (low, high)
    settings["shift"] = _number("augment['shift']", augment.get("shift") or 0.0, 0, 1)
    settings["gain_db"] = _number("augment['gain_db']", augment.get("gain_db") or 0.0, 0)
    built = AudioAugment(**settings)
    if not (built.masks or snr is not None or built.shift or built.gain_db):
        return None
    return built


# --- pipelines -------------------------------------------------------------------------


def find_unreadable(paths):
    """Return `(path, error)` for each file among `paths` whose WAV header is unusable.

    Only headers are read, so a large folder is checked quickly.

    Args:
        paths: file paths.

    Returns:
        A list of `(path, DataError)` pairs in input order.

    Example:
        >>> [path for path, _ in find_unreadable(["a.wav", "song.mp3"])]
        ['song.mp3']
    """
    bad = []
    for path in paths:
        try:
            wav_info(path)
        except DataError as e:
            bad.append((path, e))
    return bad


def _listing(paths, labels):
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    )


def _load(ds, sample_rate):
    def decode(path):
        return load_audio(path.decode("utf-8"), sample_rate)

    def load(path, label):
        waveform = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        waveform.set_shape([None])
        return waveform, label

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _cache(ds, cache, split, paths, labels, sample_rate):
    if cache is True:
        return ds.cache()
    if not cache:
        return ds
    # TF reuses an existing cache file whatever the input, so the name carries a
    # fingerprint of the files, labels and rate: changing any of them starts a new cache.
    key = repr((paths, labels, sample_rate)).encode("utf-8")
    digest = hashlib.sha1(key).hexdigest()[:12]
    prefix = os.fspath(cache)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return ds.cache(f"{prefix}-audio-{split}-{digest}")


def _check_arguments(path, manifest, validation_path, validation_split, normalize, cache,
                     preprocess):
    if (path is None) == (manifest is None):
        raise DataError(
            "Pass exactly one of `path` (a class-per-folder tree) and `manifest` (a CSV). "
            f"Received: path={path!r}, manifest={manifest!r}"
        )
    if validation_path is None and (
        isinstance(validation_split, bool)
        or not isinstance(validation_split, numbers.Real)
        or not 0 < validation_split < 1
    ):
        raise DataError(
            "validation_split must be strictly between 0 and 1, or pass validation_path. "
            f"Received: validation_split={validation_split!r}"
        )
    if normalize not in ("example", "dataset", None):
        raise DataError(
            "normalize must be 'example' (each spectrogram to mean 0, std 1), 'dataset' "
            "(per mel band, statistics of the training split) or None. "
            f"Received: normalize={normalize!r}"
        )
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise DataError(
            "cache must be True (memory), False or a file path prefix. "
            f"Received: cache={cache!r}"
        )
    if preprocess is not None and not callable(preprocess):
        raise DataError(
            f"preprocess must be a callable or None. Received: preprocess={preprocess!r}"
        )


def _split(path, manifest, validation_path, validation_split, seed):
    if path is not None:
        paths, labels, class_names = sources.list_class_folders(path, AUDIO_EXTENSIONS)
        source = f"path='{path}'"
    else:
        paths, labels, class_names = sources.read_manifest(manifest)
        source = f"manifest='{manifest}'"
    if validation_path is not None:
        val_paths, val_labels, val_names = sources.list_class_folders(
            validation_path, AUDIO_EXTENSIONS
        )
        if val_names != class_names:
            missing = sorted(set(class_names) - set(val_names))
            extra = sorted(set(val_names) - set(class_names))
            raise DataError(
                f"The validation folder {validation_path} has other classes than the "
                f"training data: missing {missing}, extra {extra}. Give both the same "
                f"class sub-folders. Received: validation_path='{validation_path}'"
            )
        return paths, labels, val_paths, val_labels, class_names, source
    train_idx, val_idx = sources.stratified_split(labels, validation_split, seed)
    if len(val_idx) == 0:
        raise DataError(
            "The split left no validation examples because every class has a single "
            "example; add examples or pass validation_path. "
            f"Received: {source}, num_examples={len(paths)}"
        )
    return (
        [paths[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [paths[i] for i in val_idx],
        [labels[i] for i in val_idx],
        class_names,
        source,
    )


def audio_datasets(
    path=None,
    manifest=None,
    validation_path=None,
    validation_split=0.2,
    sample_rate=16000,
    duration=1.0,
    n_fft=512,
    hop_length=160,
    n_mels=64,
    f_min=20.0,
    f_max=None,
    normalize="example",
    augment=None,
    batch_size=32,
    seed=0,
    cache=True,
    class_weights=None,
    verify=True,
    preprocess=None,
    shuffle_buffer=10000,
):
    """Build training and validation datasets of log-mel spectrograms from WAV clips.

    The clips come from a class-per-folder tree (`path`) or a CSV manifest (`manifest`)
    and are split per class unless `validation_path` gives a separate tree. Each clip is
    mixed to mono, resampled to `sample_rate` and cached; then cut or zero-padded to
    `duration` (a random window for training, the centre for validation), turned into a
    log-mel spectrogram `[batch, frames, n_mels, 1]` and normalised. Training clips are
    shuffled every epoch and augmented; validation is never augmented and keeps its order.

    Args:
        path: folder holding one sub-folder of `.wav` files per class.
        manifest: CSV with `path,label` columns; give exactly one of `path` and `manifest`.
        validation_path: optional class-per-folder tree used as the validation split.
        validation_split: share of each class held out for validation.
        sample_rate, duration, n_fft, hop_length, n_mels, f_min, f_max: the feature
            settings; see `AudioFeatures`.
        normalize: `"example"` scales each spectrogram to mean 0 and std 1; `"dataset"`
            scales each mel band with the mean and std of the training split (centre
            crops, before augmentation, computed once); None keeps raw log-mel values.
        augment: None, True or a dict with keys of `DEFAULT_AUGMENT`, e.g.
            `dict(time_mask=2, time_mask_width=10, noise_snr_db=20, gain_db=6)`; see
            `AudioAugment`. Masked bins are set to 0, the mean after normalisation.
        batch_size: examples per batch.
        seed: seed for the split, the shuffle, the crops and the augmentation.
        cache: True caches decoded mono waveforms in memory; a string caches them in
            files with that path prefix; False decodes every epoch.
        class_weights: None, `"balanced"` or a dict `{class: weight}`.
        verify: read every file's header first and raise one `DataError` naming the first
            bad file; turn off only for data known to be clean.
        preprocess: callable applied last to each spectrogram batch, e.g. to repeat the
            channel three times for an ImageNet backbone.
        shuffle_buffer: upper bound on the shuffle buffer, in clips.

    Returns:
        A `Datasets` whose `validation_examples` holds unbatched `(waveform, label)` pairs:
        float32 `[samples]` at `sample_rate`, centre-cropped, in validation order.

    Raises:
        DataError: for bad arguments, a missing or empty folder, fewer than two classes,
            mismatched validation classes, or unreadable WAV files.

    Example:
        >>> data = audio_datasets("data/keywords", augment=dict(time_mask=2, gain_db=6))
        >>> data.train.element_spec[0].shape
        TensorShape([None, 97, 64, 1])
    """
    _check_arguments(
        path, manifest, validation_path, validation_split, normalize, cache, preprocess
    )
    features = AudioFeatures(sample_rate, duration, n_fft, hop_length, n_mels, f_min, f_max)
    batch_size = _positive_int("batch_size", batch_size)
    shuffle_buffer = _positive_int("shuffle_buffer", shuffle_buffer)
    seed = int(seed)
    augmenter = build_audio_augment(augment, features)

    train_paths, train_labels, val_paths, val_labels, class_names, source = _split(
        path, manifest, validation_path, validation_split, seed
    )
    if verify:
        everything = train_paths + val_paths
        if validation_path is None:
            # Listing order, so "first" means the same file a user would find first.
            everything = sorted(everything)
        bad = find_unreadable(everything)
        if bad:
            raise DataError(
                f"{len(bad)} of {len(everything)} audio files cannot be read, first: "
                f"{bad[0][1]} Fix or delete them, or pass verify=False to skip this "
                f"check. Received: {source}"
            )
    weights = sources.class_weights(
        train_labels, len(class_names), class_weights, class_names=class_names
    )

    length = features.samples
    train_waves = _cache(
        _load(_listing(train_paths, train_labels), sample_rate),
        cache, "train", train_paths, train_labels, sample_rate,
    )
    val_decoded = _load(_listing(val_paths, val_labels), sample_rate)
    val_waves = _cache(val_decoded, cache, "validation", val_paths, val_labels, sample_rate)

    if normalize == "dataset":
        # This pass also fills the training cache, so the first epoch reads from it.
        centred = train_waves.map(
            lambda x, y: crop_or_pad(x, length), num_parallel_calls=tf.data.AUTOTUNE
        )
        mean, std = _dataset_statistics(centred, features, batch_size)

    def to_features(waveforms, labels, time_keep=None, freq_keep=None):
        spectrogram = features.log_mel(waveforms)
        spectrogram.set_shape([None, *features.shape])
        if normalize == "example":
            spectrogram = _normalize_example(spectrogram)
        elif normalize == "dataset":
            spectrogram = (spectrogram - mean) / std
        if time_keep is not None:
            spectrogram = spectrogram * time_keep[:, :, None, None]
            spectrogram = spectrogram * freq_keep[:, None, :, None]
        if preprocess is not None:
            spectrogram = preprocess(spectrogram)
        return spectrogram, labels

    def train_example(example, example_seed):
        waveform, label = example
        waveform = crop_or_pad(waveform, length, seed=example_seed)
        if augmenter is None:
            return waveform, label
        waveform = augmenter.waveform(waveform, example_seed)
        if not augmenter.masks:
            return waveform, label
        time_keep, freq_keep = augmenter.mask_keep(
            example_seed, features.frames, features.n_mels
        )
        return waveform, label, time_keep, freq_keep

    # Shuffle after the cache: a cache fed in shuffled order would freeze the first
    # epoch's order. Every example gets its own seed from a seeded stream that changes
    # each epoch; stateless ops then make crops and augmentation reproducible even with
    # parallel calls.
    train = train_waves.shuffle(
        min(shuffle_buffer, len(train_paths)), seed=seed, reshuffle_each_iteration=True
    )
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    train = tf.data.Dataset.zip(train, seeds)
    train = train.map(train_example, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.batch(batch_size).map(to_features, num_parallel_calls=tf.data.AUTOTUNE)

    val_cropped = val_waves.map(
        lambda x, y: (crop_or_pad(x, length), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    validation = val_cropped.batch(batch_size).map(
        to_features, num_parallel_calls=tf.data.AUTOTUNE
    )
    # A memory cache can be shared; a file cache cannot be read by two iterators while
    # it is being written, so the examples then decode on their own.
    if cache is True:
        validation_examples = val_cropped
    else:
        validation_examples = val_decoded.map(
            lambda x, y: (crop_or_pad(x, length), y), num_parallel_calls=tf.data.AUTOTUNE
        )

    return Datasets(
        train=train.prefetch(tf.data.AUTOTUNE),
        validation=validation.prefetch(tf.data.AUTOTUNE),
        class_names=list(class_names),
        class_weights=weights,
        num_train=len(train_paths),
        num_validation=len(val_paths),
        validation_examples=validation_examples,
    )
