import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfft.data import audio
from tfft.data.audio import (
    AUDIO_EXTENSIONS,
    AudioAugment,
    AudioFeatures,
    audio_datasets,
    crop_or_pad,
    load_audio,
    log_mel,
    read_wav,
    resample,
    wav_info,
)
from tfft.errors import DataError

RATE = 8000
# Small features so that every pipeline test runs in a fraction of a second.
FEATURES = dict(sample_rate=RATE, duration=0.25, n_fft=128, hop_length=64, n_mels=16)
FRAMES = AudioFeatures(**FEATURES).frames


# --- tiny WAV files of every supported layout, written with struct ---------------------

_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def _chunk(chunk_id, payload):
    pad = b"\0" if len(payload) % 2 else b""
    return chunk_id + struct.pack("<I", len(payload)) + payload + pad


def _pcm_bytes(samples, bits):
    if bits == 8:
        return np.clip(np.round(samples * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    scale = 2 ** (bits - 1)
    ints = np.clip(np.round(samples * scale), -scale, scale - 1).astype(np.int64)
    if bits == 24:
        return (ints & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.astype("<i2" if bits == 16 else "<i4").tobytes()


def _wav_bytes(samples, rate, bits=16, encoding="pcm", extensible=False, tag=None,
               extra=b""):
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
    body = b"WAVE" + _chunk(b"fmt ", fmt) + extra + _chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _write(path, samples, rate=RATE, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(_wav_bytes(samples, rate, **kwargs))
    return str(path)


def _tone(freq, rate=RATE, seconds=0.25, amplitude=0.5, phase=0.0):
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def _tree(root, seconds=0.25, per_class=4, rate=RATE):
    """Two classes of noisy tones: 'high' at 2 kHz, 'low' at 500 Hz."""
    for name, freq in (("high", 2000), ("low", 500)):
        for i in range(per_class):
            rng = np.random.default_rng([freq, i])
            clip = _tone(freq, rate, seconds, phase=i) + 0.05 * rng.standard_normal(
                int(round(rate * seconds))
            )
            _write(os.path.join(root, name, f"{name}_{i}.wav"), clip, rate)
    return str(root)


def _peak(signal, rate):
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)]


def _amplitude_at(signal, rate, freq):
    """Amplitude of the component at `freq`, by projection on a windowed sinusoid."""
    t = np.arange(len(signal)) / rate
    window = np.hanning(len(signal))
    basis = np.exp(-2j * np.pi * freq * t)
    return 2 * np.abs(np.sum(signal * window * basis)) / window.sum()


def _batches(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


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
    path = _write(
        tmp_path / "clip.wav", samples, rate=11025, bits=bits, encoding=encoding,
        extensible=extensible, extra=_chunk(b"LIST", b"INFO!"),
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
        path = _write(tmp_path / f"{bits}.wav", np.array([-1.0, 0.0, 1.0]), bits=bits)
        decoded = read_wav(path)[0][:, 0]
        assert decoded[0] == -1.0
        assert decoded[1] == 0.0
        # 32-bit full scale rounds to exactly 1.0 in float32.
        assert 1.0 - 2.0 / 2**bits <= decoded[2] <= 1.0


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    left, right = _tone(500), _tone(1500, amplitude=0.25)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1))

    mono = load_audio(path, RATE)

    assert mono.shape == (len(left),)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=2 / 32768)


def _broken(tmp_path, kind):
    good = _wav_bytes(_tone(440, seconds=0.01), RATE)
    path = tmp_path / f"{kind}.wav"
    if kind == "not_riff":
        data = b"ID3\x03" + good[4:]
    elif kind == "truncated":
        data = good[:-10]
    elif kind == "no_data":
        data = good[: good.index(b"data")]
    elif kind == "empty_data":
        data = _wav_bytes(np.zeros((0, 1)), RATE)
    elif kind == "alaw":
        data = _wav_bytes(_tone(440, seconds=0.01), RATE, bits=8, tag=6)
    elif kind == "mulaw":
        data = _wav_bytes(_tone(440, seconds=0.01), RATE, bits=8, tag=7)
    elif kind == "12bit":
        data = bytearray(good)
        data[34:36] = struct.pack("<H", 12)  # bits_per_sample of a 16-bit container
        data = bytes(data)
    elif kind == "empty_file":
        data = b""
    path.write_bytes(data)
    return str(path)


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
    path = _broken(tmp_path, kind)
    with pytest.raises(DataError, match=expected) as info:
        read_wav(path)
    assert path in str(info.value)


def test_float_files_with_nan_are_rejected(tmp_path):
    path = _write(tmp_path / "nan.wav", np.array([0.1, np.nan]), bits=32, encoding="float")
    with pytest.raises(DataError, match="NaN or infinite") as info:
        read_wav(path)
    assert path in str(info.value)


def test_decode_wav_of_tensorflow_reads_only_16_bit_pcm(tmp_path):
    # The reason decoding runs in numpy: if TensorFlow learns the other layouts, the
    # pipeline could decode in graph instead.
    data = _wav_bytes(_tone(440, seconds=0.01), RATE, bits=24)
    with pytest.raises(tf.errors.InvalidArgumentError, match="16-bit"):
        tf.audio.decode_wav(data)


# --- resampling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate_in, rate_out, freq",
    [(44100, 16000, 7000), (44100, 16000, 1000), (8000, 16000, 3000), (48000, 8000, 3000)],
)
def test_resampling_keeps_a_tone_frequency_and_amplitude(rate_in, rate_out, freq):
    out = resample(_tone(freq, rate_in, 0.5, amplitude=0.8), rate_in, rate_out)

    assert out.dtype == np.float32
    assert len(out) == int(np.ceil(0.5 * rate_out))
    middle = out[len(out) // 8 : -len(out) // 8]  # clear of the filter's edge effects
    assert abs(_peak(middle, rate_out) - freq) <= 2 * rate_out / len(middle)
    rms = np.sqrt(2 * np.mean(np.square(middle)))
    assert 20 * np.log10(rms / 0.8) == pytest.approx(0.0, abs=0.05)


def test_resampling_aliasing_is_below_minus_60_db():
    # A 9 kHz tone lies above the 8 kHz Nyquist frequency of 16 kHz audio; whatever the
    # filter lets through folds down to 16 - 9 = 7 kHz.
    out = resample(_tone(9000, 44100, 0.5, amplitude=1.0), 44100, 16000)
    middle = out[1000:-1000]
    folded = _amplitude_at(middle, 16000, 7000)
    assert 20 * np.log10(folded) < -60
    # The same holds just above Nyquist, where the filter has least room.
    out = resample(_tone(8300, 44100, 0.5, amplitude=1.0), 44100, 16000)
    assert 20 * np.log10(_amplitude_at(out[1000:-1000], 16000, 7700)) < -60


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


def test_training_crops_change_every_epoch_and_validation_is_centred(tmp_path):
    root = _tree(tmp_path / "data", seconds=0.5)
    data = audio_datasets(root, **FEATURES, batch_size=8, seed=1)

    first, labels = _batches(data.train)
    second, _ = _batches(data.train)
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
        _tone(freq, 16000, 0.5)[None].astype(np.float32), 16000, 512, 160, 40, 20.0, 8000.0
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
    clean = tf.constant(_tone(440, seconds=1.0), tf.float32)
    for snr in (0.0, 10.0, 25.0):
        noisy = AudioAugment(noise_snr_db=(snr, snr)).waveform(clean, _seed(3)).numpy()
        noise = noisy - clean.numpy()
        measured = 10 * np.log10(np.mean(clean.numpy() ** 2) / np.mean(noise**2))
        assert measured == pytest.approx(snr, abs=1.0)
    drawn = []
    for s in range(20):
        noise = AudioAugment(noise_snr_db=(10, 20)).waveform(clean, _seed(s)) - clean
        drawn.append(10 * np.log10(np.mean(clean.numpy() ** 2) / np.mean(noise.numpy() ** 2)))
    assert 9 < min(drawn) < max(drawn) < 21 and max(drawn) - min(drawn) > 3


def test_gain_stays_within_the_stated_decibels():
    clean = tf.constant(_tone(440, seconds=0.1), tf.float32)
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

    first, labels = _batches(augmented.train)
    second, _ = _batches(augmented.train)
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
    gained = audio_datasets(root, **FEATURES, normalize=None, seed=4, augment=dict(gain_db=6))
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


def test_default_augmentation_builds_every_step():
    built = audio.build_audio_augment(True, AudioFeatures(**FEATURES))
    assert built == AudioAugment(2, 10, 2, 8, (20.0, 20.0), 0.1, 6.0)
    assert audio.build_audio_augment(dict(gain_db=0), AudioFeatures(**FEATURES)) is None


# --- sources, checks and caching -------------------------------------------------------


def test_unreadable_files_raise_one_error_naming_the_first(tmp_path):
    root = _tree(tmp_path / "data")
    _broken(tmp_path / "data" / "high", "truncated")
    os.replace(tmp_path / "data" / "high" / "truncated.wav", tmp_path / "data" / "high" / "a.wav")
    _broken(tmp_path / "data" / "low", "alaw")

    with pytest.raises(DataError) as info:
        audio_datasets(root, **FEATURES)

    message = str(info.value)
    assert message.startswith("2 of 10 audio files cannot be read, first: ")
    assert os.path.join(root, "high", "a.wav") in message
    assert "verify=False" in message


def test_without_verify_a_bad_file_fails_when_read_naming_it(tmp_path):
    root = _tree(tmp_path / "data")
    _broken(tmp_path / "data" / "low", "not_riff")
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

    data = audio_datasets(manifest=tmp_path / "train.csv", **FEATURES, class_weights="balanced")

    assert data.class_names == ["high", "low"]
    assert (data.num_train, data.num_validation) == (6, 2)
    assert data.class_weights == {0: 1.0, 1: 1.0}
    x, y = _batches(data.validation)
    assert x.shape == (2, FRAMES, 16, 1) and sorted(y) == [0, 1]
    assert all(os.path.isfile(os.path.join(root, n)) for n in ("high/high_0.wav",))


def test_validation_path_and_mixed_rates_and_layouts(tmp_path):
    train = _tree(tmp_path / "train")
    val = tmp_path / "val"
    _write(str(val / "high" / "a.wav"), np.stack([_tone(2000, 44100)] * 2, 1), 44100,
           bits=24)
    _write(str(val / "low" / "b.wav"), _tone(500, 16000), 16000, bits=32, encoding="float")

    data = audio_datasets(train, validation_path=val, **FEATURES)

    assert (data.num_train, data.num_validation) == (8, 2)
    waves = [w for w, _ in data.validation_examples.as_numpy_iterator()]
    assert [round(_peak(w, RATE)) for w in waves] == [2000, 500]


def test_file_cache_replays_the_same_waveforms(tmp_path):
    root = _tree(tmp_path / "data")
    prefix = str(tmp_path / "cache" / "clips")
    data = audio_datasets(root, **FEATURES, cache=prefix)
    first, _ = _batches(data.validation)
    second, _ = _batches(data.validation)
    np.testing.assert_array_equal(first, second)
    assert any(name.startswith("clips-audio-validation-") for name in os.listdir(tmp_path / "cache"))


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
