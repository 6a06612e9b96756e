import struct

import numpy as np
import pytest
import tensorflow as tf

from audio_helpers import (
    RATE,
    broken_wav,
    peak_frequency,
    riff_chunk,
    tone,
    wav_bytes,
    write_wav,
)
from tfft.modalities.audio.decode import load_audio, read_wav, resample, wav_info
from tfft.errors import DataError


def _amplitude_at(signal, rate, freq):
    """Amplitude of the component at `freq`, by projection on a windowed sinusoid."""
    t = np.arange(len(signal)) / rate
    window = np.hanning(len(signal))
    basis = np.exp(-2j * np.pi * freq * t)
    return 2 * np.abs(np.sum(signal * window * basis)) / window.sum()


# --- decoding --------------------------------------------------------------------------


LAYOUTS = [
    (8, "pcm", False, 1 / 128),
    (16, "pcm", False, 1 / 32768),
    (24, "pcm", False, 2.0**-23),
    (32, "pcm", False, 2.0**-31 + 1e-7),
    (32, "float", False, 1e-7),
    (64, "float", False, 1e-7),
    (16, "pcm", True, 1 / 32768),
    (24, "pcm", True, 2.0**-23),
    (32, "float", True, 1e-7),
]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bits, encoding, extensible, step", LAYOUTS)
def test_every_layout_decodes_within_quantisation(
    tmp_path, bits, encoding, extensible, step, channels
):
    rng = np.random.default_rng(bits + channels)
    samples = rng.uniform(-0.99, 0.99, (50, channels))
    samples[0] = [-1.0] * channels
    # An odd-sized chunk before the data checks that the pad byte is skipped.
    path = write_wav(
        tmp_path / "clip.wav", samples, rate=11025, bits=bits, encoding=encoding,
        extensible=extensible, extra=riff_chunk(b"LIST", b"INFO!"),
    )

    decoded, rate = read_wav(path)

    assert rate == 11025
    assert decoded.dtype == np.float32
    assert decoded.shape == (50, channels)
    np.testing.assert_allclose(decoded, samples, atol=step * 0.51 + 1e-7)
    info = wav_info(path)
    assert (info.channels, info.bits, info.encoding, info.frames) == (
        channels, bits, encoding, 50
    )
    assert info.duration == pytest.approx(50 / 11025)


def test_integer_formats_cover_minus_one_to_one(tmp_path):
    for bits in (8, 16, 24, 32):
        path = write_wav(tmp_path / f"{bits}.wav", np.array([-1.0, 0.0, 1.0]), bits=bits)
        decoded = read_wav(path)[0][:, 0]
        assert decoded[0] == -1.0
        assert decoded[1] == 0.0
        # 32-bit full scale rounds to exactly 1.0 in float32.
        assert 1.0 - 2.0 / 2**bits <= decoded[2] <= 1.0


@pytest.mark.parametrize("sentinel", [0xFFFFFFFF, 0x7FFFF000])
def test_files_streamed_to_a_pipe_read_to_the_end(tmp_path, sentinel):
    # ffmpeg, sox and espeak-ng writing to stdout cannot go back to fill in the size.
    samples = tone(440, seconds=0.01)
    data = bytearray(wav_bytes(samples, RATE))
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", sentinel)
    path = tmp_path / "streamed.wav"
    path.write_bytes(bytes(data))
    np.testing.assert_allclose(read_wav(str(path))[0][:, 0], samples, atol=1 / 32768)


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    left, right = tone(500), tone(1500, amplitude=0.25)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1))

    mono = load_audio(path, RATE)

    assert mono.shape == (len(left),)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=2 / 32768)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("not_riff", "is not a WAV file"),
        ("empty_file", "is not a WAV file"),
        ("truncated", "is truncated: its data chunk declares"),
        ("no_data", "is truncated: it has no data chunk"),
        ("empty_data", "zero-length clip"),
        ("alaw", "8-bit A-law audio, which cannot be decoded; supported: 8-bit unsigned"),
        ("mulaw", "8-bit mu-law audio"),
        ("12bit", "12-bit PCM audio, which cannot be decoded; supported:"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path, kind, expected):
    path = broken_wav(tmp_path, kind)
    with pytest.raises(DataError, match=expected) as info:
        read_wav(path)
    assert path in str(info.value)


def test_float_files_with_nan_are_rejected(tmp_path):
    path = write_wav(
        tmp_path / "nan.wav", np.array([0.1, np.nan]), bits=32, encoding="float"
    )
    with pytest.raises(DataError, match="NaN or infinite") as info:
        read_wav(path)
    assert path in str(info.value)


def test_decode_wav_of_tensorflow_reads_only_16_bit_pcm(tmp_path):
    # The reason decoding runs in numpy: if TensorFlow learns the other layouts, the
    # pipeline could decode in graph instead.
    data = wav_bytes(tone(440, seconds=0.01), RATE, bits=24)
    with pytest.raises(tf.errors.InvalidArgumentError, match="16-bit"):
        tf.audio.decode_wav(data)


# --- resampling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate_in, rate_out, freq",
    [(44100, 16000, 7000), (44100, 16000, 1000), (8000, 16000, 3000), (48000, 8000, 3000)],
)
def test_resampling_keeps_a_tone_frequency_and_amplitude(rate_in, rate_out, freq):
    out = resample(tone(freq, rate_in, 0.5, amplitude=0.8), rate_in, rate_out)

    assert out.dtype == np.float32
    assert len(out) == int(np.ceil(0.5 * rate_out))
    middle = out[len(out) // 8 : -len(out) // 8]  # clear of the filter's edge effects
    assert abs(peak_frequency(middle, rate_out) - freq) <= 2 * rate_out / len(middle)
    rms = np.sqrt(2 * np.mean(np.square(middle)))
    assert 20 * np.log10(rms / 0.8) == pytest.approx(0.0, abs=0.05)


def test_resampling_aliasing_is_below_minus_60_db():
    # A 9 kHz tone lies above the 8 kHz Nyquist frequency of 16 kHz audio; whatever the
    # filter lets through folds down to 16 - 9 = 7 kHz.
    out = resample(tone(9000, 44100, 0.5, amplitude=1.0), 44100, 16000)
    middle = out[1000:-1000]
    folded = _amplitude_at(middle, 16000, 7000)
    assert 20 * np.log10(folded) < -60
    # The same holds just above Nyquist, where the filter has least room.
    out = resample(tone(8300, 44100, 0.5, amplitude=1.0), 44100, 16000)
    assert 20 * np.log10(_amplitude_at(out[1000:-1000], 16000, 7700)) < -60


def _tone(rate=16000, seconds=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("suffix, subtype, tolerance", [(".flac", "PCM_16", 1 / 32768), (".ogg", "VORBIS", None)])
def test_flac_and_ogg_decode_through_libsndfile(tmp_path, suffix, subtype, tolerance):
    import soundfile

    from tfft.modalities.audio.decode import audio_info, load_audio, read_audio

    path = tmp_path / f"tone{suffix}"
    stereo = np.stack([_tone(), 0.5 * _tone()], axis=1)
    soundfile.write(path, stereo, 16000, subtype=subtype)
    samples, rate = read_audio(path)
    assert rate == 16000 and samples.shape[1] == 2 and samples.dtype == np.float32
    assert audio_info(path).samplerate == 16000
    if tolerance is not None:  # lossless: the samples come back to 16-bit precision
        np.testing.assert_allclose(samples, stereo, atol=tolerance)
    assert load_audio(path, 8000).shape == (4000,)  # mono, resampled


def test_a_broken_flac_is_named_and_found_before_training(tmp_path):
    import soundfile

    from tfft.errors import DataError
    from tfft.modalities.audio.decode import find_unreadable, read_audio

    good, bad = tmp_path / "good.flac", tmp_path / "bad.flac"
    soundfile.write(good, _tone(), 16000)
    bad.write_bytes(b"fLaC" + b"\0" * 20)
    with pytest.raises(DataError, match=f"{bad} cannot be decoded"):
        read_audio(bad)
    assert [path for path, _ in find_unreadable([good, bad])] == [bad]


def test_a_class_folder_of_flac_files_trains(tmp_path):
    import soundfile

    from tfft.modalities.audio.pipeline import audio_datasets

    rng = np.random.default_rng(0)
    for label, frequency in (("low", 300.0), ("high", 2000.0)):
        (tmp_path / label).mkdir()
        for i in range(4):
            t = np.arange(8000) / 16000
            clip = 0.4 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6)) + 0.01 * rng.standard_normal(8000)
            soundfile.write(tmp_path / label / f"{i}.flac", clip.astype(np.float32), 16000)
    data = audio_datasets(path=str(tmp_path), validation_split=0.25, duration=0.5, batch_size=2, cache=False)
    spectrograms, labels = next(iter(data.train_epoch(0)))
    assert data.class_names == ["high", "low"] and spectrograms.shape[1:] == (47, 64, 1)
