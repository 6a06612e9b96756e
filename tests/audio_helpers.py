"""Tiny WAV files and test signals shared by the audio tests.

The files are written byte by byte with `struct`, in every layout the decoder supports and
in the broken forms it must reject, so the tests depend on no audio library.
"""

import os
import struct

import numpy as np

RATE = 8000
# Small features so that every pipeline test runs in a fraction of a second.
FEATURES = dict(sample_rate=RATE, duration=0.25, n_fft=128, hop_length=64, n_mels=16)

_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def riff_chunk(chunk_id, payload):
    """One RIFF chunk, with the pad byte that follows an odd-sized payload."""
    pad = b"\0" if len(payload) % 2 else b""
    return chunk_id + struct.pack("<I", len(payload)) + payload + pad


def _pcm_bytes(samples, bits):
    if bits == 8:
        return np.clip(np.round(samples * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    scale = 2 ** (bits - 1)
    ints = np.clip(np.round(samples * scale), -scale, scale - 1).astype(np.int64)
    if bits == 24:
        low_bytes = (ints & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)
        return low_bytes[:, :3].tobytes()
    return ints.astype("<i2" if bits == 16 else "<i4").tobytes()


def wav_bytes(
    samples, rate, bits=16, encoding="pcm", extensible=False, tag=None, extra=b""
):
    """A WAV file; `extra` is inserted between the fmt and data chunks."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    if encoding == "float":
        data = samples.astype("<f4" if bits == 32 else "<f8").tobytes()
        code = 3
    else:
        data = _pcm_bytes(samples.ravel(), bits)
        code = 1
    code = code if tag is None else tag
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0
        ) + struct.pack("<H", code) + _GUID_TAIL
    else:
        fmt = struct.pack("<HHIIHH", code, channels, rate, rate * block, block, bits)
    body = b"WAVE" + riff_chunk(b"fmt ", fmt) + extra + riff_chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path, samples, rate=RATE, **kwargs):
    """Write `wav_bytes(samples, rate, **kwargs)` to `path`, creating its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(wav_bytes(samples, rate, **kwargs))
    return str(path)


def tone(freq, rate=RATE, seconds=0.25, amplitude=0.5, phase=0.0):
    """A sine wave as a float64 array."""
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def peak_frequency(signal, rate):
    """The frequency of the strongest FFT bin of a Hann-windowed signal."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)]


def broken_wav(folder, kind):
    """Write `folder/<kind>.wav`, a file the decoder must reject, and return its path."""
    good = wav_bytes(tone(440, seconds=0.01), RATE)
    path = folder / f"{kind}.wav"
    if kind == "not_riff":
        data = b"ID3\x03" + good[4:]
    elif kind == "truncated":
        data = good[:-10]
    elif kind == "no_data":
        data = good[: good.index(b"data")]
    elif kind == "empty_data":
        data = wav_bytes(np.zeros((0, 1)), RATE)
    elif kind == "alaw":
        data = wav_bytes(tone(440, seconds=0.01), RATE, bits=8, tag=6)
    elif kind == "mulaw":
        data = wav_bytes(tone(440, seconds=0.01), RATE, bits=8, tag=7)
    elif kind == "12bit":
        data = bytearray(good)
        data[34:36] = struct.pack("<H", 12)  # bits_per_sample of a 16-bit container
        data = bytes(data)
    elif kind == "empty_file":
        data = b""
    path.write_bytes(data)
    return str(path)
