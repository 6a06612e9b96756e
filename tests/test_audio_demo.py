import os
import shutil

import numpy as np
import pytest

from tfft.modalities.audio import demo as speech
from tfft.modalities.audio.pipeline import audio_datasets, read_wav, wav_info
from tfft.modalities.audio.demo import KEYWORDS_A, KEYWORDS_B, make_keyword_set
from tfft.errors import DataError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)

SMALL = dict(voices=("en-us", "en+f2"), speeds=(150, 190), pitches=(50,), seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("kws") / "set"
    return make_keyword_set(folder, ["yes", "seven"], **SMALL)


def _frame_rms(samples, rate, seconds=0.05):
    size = int(rate * seconds)
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    return np.sqrt(np.mean(np.square(frames), axis=1))


def test_keyword_lists_are_disjoint_command_words():
    assert 8 <= len(KEYWORDS_A) <= 10 and 8 <= len(KEYWORDS_B) <= 10
    assert not set(KEYWORDS_A) & set(KEYWORDS_B)
    assert all(word.isalpha() and word.islower() for word in KEYWORDS_A + KEYWORDS_B)


@needs_espeak
def test_every_word_voice_and_speed_gives_one_clip(small_set):
    assert sorted(os.listdir(small_set)) == [".complete", "seven", "yes"]
    for word in ("seven", "yes"):
        names = sorted(os.listdir(os.path.join(small_set, word)))
        assert len(names) == 4
        assert {name.split("_", 2)[2] for name in names} == {
            "en-us_s150_p50.wav", "en-us_s190_p50.wav", "en_f2_s150_p50.wav",
            "en_f2_s190_p50.wav",
        }


@needs_espeak
def test_clips_are_one_second_16_bit_mono_speech_over_noise(small_set):
    clips = []
    for word in ("seven", "yes"):
        for name in sorted(os.listdir(os.path.join(small_set, word))):
            path = os.path.join(small_set, word, name)
            info = wav_info(path)
            assert (info.sample_rate, info.channels, info.bits, info.encoding) == (
                16000, 1, 16, "pcm"
            )
            assert info.frames == 16000
            samples = read_wav(path)[0][:, 0]
            rms = _frame_rms(samples, 16000)
            # Speech stands out of the background: noise is at least 10 dB below it.
            assert rms.max() > 2.0 * np.median(np.sort(rms)[:5])
            assert np.min(rms) > 0  # background noise everywhere
            clips.append(samples)
    # Every clip differs: voice, speed, offset, level and noise.
    assert all(
        not np.allclose(clips[i], clips[j])
        for i in range(len(clips))
        for j in range(i + 1, len(clips))
    )


@needs_espeak
def test_utterances_sit_at_different_offsets(tmp_path):
    folder = make_keyword_set(
        tmp_path / "clean", ["go", "stop"], voices=("en-us",), speeds=(160,),
        pitches=(50,), per_word=4, noise_snr_db=None,
    )
    starts = set()
    for name in sorted(os.listdir(os.path.join(folder, "go"))):
        samples = read_wav(os.path.join(folder, "go", name))[0][:, 0]
        # Without noise everything outside the utterance is digital silence.
        loud = np.flatnonzero(samples != 0)
        assert 0.2 < (loud[-1] - loud[0]) / 16000 < 1.0
        starts.add(int(loud[0]))
    assert len(starts) == 4


@needs_espeak
def test_a_second_call_reuses_the_set_and_other_parameters_replace_it(small_set, tmp_path):
    first = sorted(os.listdir(os.path.join(small_set, "yes")))[0]
    path = os.path.join(small_set, "yes", first)
    before = os.stat(path).st_mtime_ns

    assert make_keyword_set(small_set, ["yes", "seven"], **SMALL) == small_set
    assert os.stat(path).st_mtime_ns == before

    copy = str(tmp_path / "copy")
    shutil.copytree(small_set, copy)
    make_keyword_set(copy, ["yes", "seven"], **{**SMALL, "pitches": (40,)})
    assert all(name.endswith("_p40.wav") for name in os.listdir(os.path.join(copy, "yes")))
    assert os.listdir(tmp_path) == ["copy"]  # no staging or retired folder left behind


@needs_espeak
def test_the_set_feeds_audio_datasets(small_set):
    data = audio_datasets(small_set, validation_split=0.25, batch_size=8)
    assert data.class_names == ["seven", "yes"]
    x, y = next(iter(data.train))
    assert x.shape == (6, 97, 64, 1)


@needs_espeak
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(voices=("no-such-voice",)), "espeak-ng has no voice 'no-such-voice'"),
        (dict(voices=("en+nosuch",)), "no voice variant 'nosuch'"),
        (dict(speeds=(80,), duration=0.3), r"lasts .* longer than the 0.3 s clip"),
    ],
)
def test_voice_and_length_problems_are_explained(tmp_path, kwargs, expected):
    settings = {**SMALL, "speeds": (190,), **kwargs}
    with pytest.raises(DataError, match=expected):
        make_keyword_set(tmp_path / "set", ["yes", "seven"], **settings)
    assert not os.path.exists(tmp_path / "set")
    assert os.listdir(tmp_path) == []


def test_missing_espeak_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="install it: apt-get install espeak-ng"):
        make_keyword_set(tmp_path / "set", ["yes", "no"])


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(words="yes"), "words must be a list of at least two words"),
        (dict(words=["yes", "-rf"]), "Each word must be letters"),
        (dict(words=["yes", "Yes"]), "words must be distinct"),
        (dict(speeds=(40,)), "speeds must be a non-empty list of ints between 80 and 450"),
        (dict(pitches=()), "pitches must be a non-empty list"),
        (dict(noise_snr_db=(30, 10)), "noise_snr_db must be None"),
    ],
)
def test_bad_arguments_fail_before_speaking(tmp_path, kwargs, expected):
    arguments = {"words": ["yes", "no"], **kwargs}
    with pytest.raises(DataError, match=expected):
        make_keyword_set(tmp_path / "set", **arguments)


def test_a_folder_of_other_files_is_never_overwritten(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already holds files that are not a keyword set"):
        make_keyword_set(tmp_path, ["yes", "no"])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_background_noise_has_zero_mean_and_unit_power():
    rng = np.random.default_rng(0)
    for _ in range(6):
        noise = speech._noise(rng, 16000)
        assert np.mean(np.square(noise)) == pytest.approx(1.0)
        assert abs(noise.mean()) < 1e-9
