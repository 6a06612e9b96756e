"""Spoken keyword sets made offline with the espeak-ng speech synthesiser.

`make_keyword_set` speaks each word with several voices, speeds and pitches, places each
utterance at a random position inside a fixed-length clip over background noise, and
writes 16-bit mono WAVs in a class-per-folder tree that `tfft.data.audio_datasets` reads
directly. `KEYWORDS_A` and `KEYWORDS_B` are two disjoint command vocabularies: pretrain a
keyword spotter on one and fine-tune it on the other.
"""

import concurrent.futures
import os
import re
import shutil
import subprocess
import wave

import numpy as np

from tfft.data import generated
from tfft.modalities.audio import pipeline as audio
from tfft.data.checks import number
from tfft.errors import DataError

KEYWORDS_A = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KEYWORDS_B = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"
)

# American, British, Received Pronunciation and Scottish accents, and espeak-ng's male
# and female voice variants (`language+variant`).
DEFAULT_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en+m3",
    "en+f2",
    "en+f4",
    "en-us+m7",
)

_ESPEAK = "espeak-ng"
_INSTALL = "install it: apt-get install espeak-ng"
# Bump when the clip recipe changes, so sets made by an older version are regenerated.
_VERSION = 1
_WORD = re.compile(r"^[A-Za-z][A-Za-z' -]*$")
_NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def _espeak():
    binary = shutil.which(_ESPEAK)
    if binary is None:
        raise DataError(
            f"{_ESPEAK} is not installed, so spoken keywords cannot be made; {_INSTALL} "
            f"(or brew install espeak-ng). Received: PATH={os.environ.get('PATH', '')!r}"
        )
    return binary


def _run(command):
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _known_voices(binary):
    """Every name `espeak-ng -v` accepts: language codes, voice names and voice files."""
    names = set()
    for line in _run([binary, "--voices"]).stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        names.update((fields[1], fields[3], fields[4], fields[4].rsplit("/", 1)[-1]))
        # "Other languages" come as "(en 2)(en-gb 3)": a code and a priority each.
        names.update(re.findall(r"\(([^\s()]+) \d+\)", line))
    return {name.lower() for name in names}


def _check_voices(binary, voices):
    # `espeak-ng -v` cannot be trusted to fail: it falls back to a voice for a prefix
    # ("no-such-voice" speaks Norwegian) or to the plain voice for an unknown variant.
    known = _known_voices(binary)
    listing = _run([binary, "--voices=variant"]).stdout
    variants = {
        token[len("!v/"):] for token in listing.split() if token.startswith("!v/")
    }
    for voice in voices:
        language, _, variant = voice.partition("+")
        if language.lower() not in known:
            raise DataError(
                f"espeak-ng has no voice '{language}'; list them with `espeak-ng "
                f"--voices=en`, e.g. {list(DEFAULT_VOICES[:4])}. Received: voice='{voice}'"
            )
        if variant and variant not in variants:
            raise DataError(
                f"espeak-ng has no voice variant '{variant}'; pick one of "
                f"{sorted(variants)} (see `espeak-ng --voices=variant`). "
                f"Received: voice='{voice}'"
            )


def _speak(binary, word, voice, speed, pitch, path):
    command = [binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, word]
    result = _run(command)
    if result.returncode != 0:
        raise DataError(
            f"espeak-ng failed to speak '{word}' ({result.stderr.strip()}). "
            f"Received: command={command}"
        )
    samples, rate = audio.read_wav(path)
    os.remove(path)
    return samples[:, 0], rate


def _trim(utterance, rate):
    """Cut leading and trailing silence, keeping 10 ms either side."""
    loud = np.flatnonzero(np.abs(utterance) > 0.01 * np.max(np.abs(utterance)))
    margin = int(0.01 * rate)
    return utterance[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def _noise(rng, length):
    """Unit-power background noise of a random colour (white, pink or brown)."""
    exponent = _NOISE_COLOURS[rng.choice(sorted(_NOISE_COLOURS))]
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length)
    frequencies[0] = frequencies[1]
    noise = np.fft.irfft(spectrum * frequencies ** (-exponent / 2.0), length)
    noise -= noise.mean()
    return noise / np.sqrt(np.mean(np.square(noise)))


def _make_clip(binary, staging, job, settings):
    word, folder, index, voice, speed, pitch, rng = job
    spoken, rate = _speak(
        binary, word, voice, speed, pitch, os.path.join(staging, f".{folder}_{index}.wav")
    )
    if not np.any(spoken):
        raise DataError(
            f"espeak-ng produced silence for '{word}' with voice '{voice}'; check the "
            f"spelling. Received: word='{word}'"
        )
    sample_rate, length = settings["sample_rate"], settings["samples"]
    utterance = audio.resample(spoken, rate, sample_rate).astype(np.float64)
    utterance = _trim(utterance, sample_rate)
    if len(utterance) > length:
        raise DataError(
            f"'{word}' spoken by '{voice}' at speed {speed} lasts "
            f"{len(utterance) / sample_rate:.2f} s, longer than the "
            f"{settings['duration']} s clip; raise the speeds or the duration. "
            f"Received: speeds={settings['speeds']}"
        )
    utterance *= 10 ** (rng.uniform(-12.0, -1.0) / 20.0) / np.max(np.abs(utterance))
    clip = np.zeros(length)
    offset = rng.integers(0, length - len(utterance) + 1)
    clip[offset : offset + len(utterance)] = utterance
    if settings["noise_snr_db"] is not None:
        snr = rng.uniform(*settings["noise_snr_db"])
        power = np.mean(np.square(utterance))
        clip += _noise(rng, length) * np.sqrt(power / 10 ** (snr / 10.0))
    pcm = np.round(np.clip(clip, -1.0, 32767 / 32768) * 32768).astype("<i2")
    name = f"{folder}_{index:04d}_{voice.replace('+', '_')}_s{speed}_p{pitch}.wav"
    with wave.open(os.path.join(staging, folder, name), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def _int_list(name, values, low, high):
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    values = list(values) if isinstance(values, (list, tuple)) else None
    if not values or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and low <= v <= high
        for v in values
    ):
        raise DataError(
            f"{name} must be a non-empty list of ints between {low} and {high}. "
            f"Received: {name}={values!r}"
        )
    return [int(v) for v in values]


def _check_arguments(words, voices, speeds, pitches, per_word, sample_rate, duration,
                     noise_snr_db, seed):
    if isinstance(words, str) or not isinstance(words, (list, tuple)) or len(words) < 2:
        raise DataError(
            f"words must be a list of at least two words, e.g. {list(KEYWORDS_A[:3])}. "
            f"Received: words={words!r}"
        )
    folders = []
    for word in words:
        if not isinstance(word, str) or not _WORD.match(word):
            raise DataError(
                "Each word must be letters, apostrophes, hyphens or spaces, starting "
                f"with a letter. Received: word={word!r}"
            )
        folders.append(word.strip().lower().replace(" ", "_"))
    if len(set(folders)) != len(folders):
        raise DataError(f"words must be distinct. Received: words={list(words)!r}")
    if isinstance(voices, str):
        voices = (voices,)
    if not voices or not all(isinstance(v, str) and v for v in voices):
        raise DataError(
            f"voices must be a non-empty list of espeak-ng voice names such as "
            f"{list(DEFAULT_VOICES[:3])}. Received: voices={voices!r}"
        )
    settings = dict(
        words=list(words),
        folders=folders,
        voices=list(voices),
        speeds=_int_list("speeds", speeds, 80, 450),
        pitches=_int_list("pitches", pitches, 0, 99),
        per_word=None if per_word is None else _int_list("per_word", per_word, 1, 10**6)[0],
        sample_rate=_int_list("sample_rate", sample_rate, 4000, 192000)[0],
        duration=number("duration", duration, minimum=0.1),
        seed=_int_list("seed", seed, 0, 2**63 - 1)[0],
    )
    settings["samples"] = int(round(settings["sample_rate"] * settings["duration"]))
    if noise_snr_db is not None:
        pair = tuple(noise_snr_db) if isinstance(noise_snr_db, (list, tuple)) else (
            noise_snr_db, noise_snr_db
        )
        if len(pair) != 2 or pair[0] > pair[1]:
            raise DataError(
                "noise_snr_db must be None, a number of dB or a (low, high) pair. "
                f"Received: noise_snr_db={noise_snr_db!r}"
            )
        noise_snr_db = [number("noise_snr_db", v) for v in pair]
    settings["noise_snr_db"] = noise_snr_db
    return settings


def _jobs(settings):
    grid = [
        (voice, speed, pitch)
        for voice in settings["voices"]
        for speed in settings["speeds"]
        for pitch in settings["pitches"]
    ]
    per_word = settings["per_word"] or len(grid)
    for w, (word, folder) in enumerate(zip(settings["words"], settings["folders"])):
        order = np.random.default_rng([settings["seed"], w]).permutation(len(grid))
        for i in range(per_word):
            # One generator per clip keeps each clip independent of the others and of
            # the order in which parallel workers finish.
            rng = np.random.default_rng([settings["seed"], w, i, 1])
            voice, speed, pitch = grid[order[i % len(grid)]]
            if i >= len(grid):
                # Later rounds through the grid jitter speed and pitch, so no two clips
                # of a word are the same utterance.
                speed = int(np.clip(round(speed * rng.uniform(0.9, 1.1)), 80, 450))
                pitch = int(np.clip(pitch + rng.integers(-10, 11), 0, 99))
            yield word, folder, i, voice, speed, pitch, rng


def make_keyword_set(
    directory,
    words,
    voices=DEFAULT_VOICES,
    speeds=(130, 160, 190),
    pitches=(35, 50, 65),
    per_word=None,
    sample_rate=16000,
    noise_snr_db=(10, 30),
    seed=0,
    duration=1.0,
):
    """Speak keywords with espeak-ng and write them as a class-per-folder WAV set.

    Each clip is one utterance (`espeak-ng -v VOICE -s SPEED -p PITCH -w out.wav WORD`),
    resampled to `sample_rate`, trimmed of silence, set to a random level, placed at a
    random offset inside a `duration`-long clip, and mixed with white, pink or brown
    noise at a random signal-to-noise ratio (relative to the utterance's power). The set
    is written to a hidden temporary folder beside `directory` and renamed into place; a
    `.complete` marker records the parameters, so calling again with the same ones
    returns at once (without needing espeak-ng) and other ones replace the set.

    Args:
        directory: folder to create; it gets one sub-folder per word (lower case, spaces
            as underscores) of 16-bit mono WAV files.
        words: the keywords, e.g. `KEYWORDS_A`.
        voices: espeak-ng voices, optionally with a variant: `"en-us"`, `"en+f2"`.
        speeds: speaking rates in words per minute (80-450).
        pitches: pitches (0-99).
        per_word: clips per word; None for one per voice, speed and pitch. More clips
            than combinations cycle through them with jittered speed and pitch.
        sample_rate: rate of the written files in Hz.
        noise_snr_db: None for clean clips, a number of dB, or a `(low, high)` range.
        seed: integer seed for placement, level and noise.
        duration: clip length in seconds.

    Returns:
        `directory`, as a string.

    Raises:
        DataError: espeak-ng is missing; a voice, word or argument is invalid; an
            utterance is longer than the clip; or `directory` holds other files.

    Example:
        >>> folder = make_keyword_set("/tmp/kws", KEYWORDS_B, per_word=40)
        >>> data = tfft.data.audio_datasets(folder, augment=dict(time_mask=2))
    """
    settings = _check_arguments(
        words, voices, speeds, pitches, per_word, sample_rate, duration, noise_snr_db, seed
    )
    directory = os.fspath(directory)
    params = {key: settings[key] for key in sorted(settings) if key != "folders"}
    params["version"] = _VERSION
    if generated.is_current(directory, params):
        return directory
    generated.check_folder(directory, "the keyword set", "a keyword set")
    binary = _espeak()
    _check_voices(binary, settings["voices"])

    def write(staging):
        for folder in settings["folders"]:
            os.makedirs(os.path.join(staging, folder))
        workers = min(8, 2 * (os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(_make_clip, binary, staging, job, settings)
                for job in _jobs(settings)
            ]
            for future in futures:
                future.result()

    generated.write_folder(directory, params, write)
    return directory
