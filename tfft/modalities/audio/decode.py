"""Recordings: header checks, decoding to float samples, and resampling.

WAV is parsed here; FLAC, Ogg Vorbis/Opus and MP3 are decoded by libsndfile through
`soundfile` (`read_audio`, `audio_info` choose by the file's suffix).

`wav_info` reads and checks a header without touching the samples, and `find_unreadable`
runs it over a whole listing so that a bad file is reported before a pipeline starts;
`read_wav` decodes the samples, `resample` changes their rate, and `load_audio` chains the
two into the mono waveform per file that the pipelines of `tfft/modalities/audio/pipeline.py` cache. All
of it is plain numpy and scipy, called from `tf.data` through `tf.numpy_function`.

Why decoding runs in numpy: `tf.audio.decode_wav` reads 16-bit PCM only (8-, 24- and
32-bit PCM fail with "Can only read 16-bit WAV files", IEEE float with "Expected 1 (PCM)"),
and TensorFlow ships no resampler. `read_wav` parses every common WAV layout with
`numpy.frombuffer` and `resample` runs `scipy.signal.resample_poly`; both run once per
file through `tf.numpy_function` and the result is cached, so their cost is paid in the
first epoch (about 4 ms per second of 44.1 kHz audio on one core).

Why a custom resampling filter: `resample_poly`'s default filter puts its cutoff at the
new Nyquist frequency with a wide transition, so a 9 kHz tone resampled from 44.1 kHz to
16 kHz leaves an alias at 7 kHz only about 30 dB down. The Kaiser filter here reaches
80 dB at the lower Nyquist frequency and passes everything below 90% of it unchanged.
"""

import dataclasses
import functools
import math
import os
import struct

import numpy as np
import scipy.signal

from tfft.errors import DataError

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
# Data chunk sizes that writers streaming to a pipe put in the header (ffmpeg; sox and
# espeak-ng), meaning "up to the end of the file".
_UNKNOWN_LENGTH = (0xFFFFFFFF, 0x7FFFF000)
_STOPBAND_DB = 80.0
_PASSBAND = 0.9  # share of the lower Nyquist frequency that the resampler leaves untouched


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
                    if chunk_size in _UNKNOWN_LENGTH:
                        chunk_size = size - start
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


# Decoded by libsndfile (soundfile), not by the WAV parser here.
COMPRESSED = (".flac", ".ogg", ".oga", ".opus", ".mp3")


def _compressed(path):
    return os.fspath(path).lower().endswith(COMPRESSED)


def audio_info(path):
    """Check a recording's header without decoding it: `wav_info` for WAV, libsndfile's
    header reading for the compressed formats; `DataError` naming the file otherwise."""
    if not _compressed(path):
        return wav_info(path)
    import soundfile

    path = os.fspath(path)
    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as e:
        raise DataError(f"{path} cannot be decoded ({str(e).splitlines()[0]}); {_CONVERT}. "
                        f"Received: path='{path}'") from None
    if info.frames == 0:
        raise DataError(f"{path} is a zero-length clip. Delete the file. Received: path='{path}'")
    return info


def read_audio(path):
    """Decode a recording to `(samples [frames, channels] float32, sample_rate)`: WAV by
    `read_wav`, FLAC, Ogg and MP3 by libsndfile."""
    if not _compressed(path):
        return read_wav(path)
    import soundfile

    audio_info(path)
    path = os.fspath(path)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as e:
        raise DataError(f"{path} cannot be decoded ({str(e).splitlines()[0]}); {_CONVERT}. "
                        f"Received: path='{path}'") from None
    return samples, int(rate)


def find_unreadable(paths):
    """Return `(path, error)` for each file among `paths` whose header is unusable.

    Only headers are read, so a large folder is checked quickly.

    Args:
        paths: file paths.

    Returns:
        A list of `(path, DataError)` pairs in input order.

    Example:
        >>> [path for path, _ in find_unreadable(["a.wav", "broken.flac"])]
        ['broken.flac']
    """
    bad = []
    for path in paths:
        try:
            audio_info(path)
        except DataError as e:
            bad.append((path, e))
    return bad


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
    """Read a recording (WAV, FLAC, Ogg, MP3) as one mono waveform at `sample_rate`.

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
    samples, rate = read_audio(path)
    return resample(samples.mean(axis=1), rate, sample_rate)
