"""`tfft export` of an audio run: waveforms at any supported rate, or WAV bytes, become the
spectrograms of the run's validation pipeline inside the SavedModel, normalisation
statistics included; TFLite takes clips at the training rate."""

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfft.cli import main
from tfft.modalities.audio.decode import resample
from tfft.modalities.audio.serving import resample_to
from tfft.testing import run_probabilities, tflite_outputs, write_recipe, write_tone_folder

pytestmark = pytest.mark.filterwarnings("ignore")

RECIPE = """
    backbone = dict(name="audio_cnn", weights=None)
    data = dict(kind="audio", path={data!r}, batch_size=6, validation_split=0.25, sample_rate=8000, duration=0.5,
                n_fft=256, hop_length=80, n_mels=16, normalize="dataset")
    schedule = dict(kind="two_phase", steps=6, lr=0.01, finetune_lr=0.003)
"""

SERVE = """
import json, sys, wave
import numpy as np
import tensorflow as tf
files = json.loads(sys.stdin.read())
model = tf.saved_model.load(sys.argv[1])
wav = model.signatures["serving_wav"](wav_bytes=tf.constant([open(f, "rb").read() for f in files]))
clips = []
for f in files:
    with wave.open(f) as w:
        clips.append(np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0)
rate = int(sys.argv[2])
wave_out = model.signatures["serving_default"](waveform=tf.constant(np.stack(clips), tf.float32),
                                               sample_rate=tf.constant(rate))
print(json.dumps(dict(wav=wav["probabilities"].numpy().tolist(), waveform=wave_out["probabilities"].numpy().tolist(),
                      imported=sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub")))))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_audio")
    write_tone_folder(root / "tones", per_class=8)
    write_tone_folder(root / "tones22k", per_class=3, sample_rate=22050, seed=5)
    recipe = write_recipe(root / "audio.py", RECIPE.format(data=str(root / "tones")))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def _pipeline(root, folder):
    return run_probabilities(root / "run", folder)


@pytest.mark.parametrize("folder, rate", [("tones", 8000), ("tones22k", 22050)])
def test_saved_model_takes_waveforms_and_wav_bytes_with_tensorflow_alone(run, folder, rate):
    files, expected = _pipeline(run, run / folder)
    served = subprocess.run([sys.executable, "-c", SERVE, str(run / "run" / "export" / "saved_model"), str(rate)],
                            input=json.dumps(files), capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert served.returncode == 0, served.stderr[-2000:]
    out = json.loads(served.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    np.testing.assert_allclose(np.array(out["wav"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.array(out["waveform"]), expected, atol=1e-5)


def test_resampling_in_tensorflow_is_the_pipelines(run):
    rng = np.random.default_rng(0)
    for rate in (11025, 44100, 48000):
        clip = (0.3 * rng.standard_normal(rate // 2)).astype(np.float32)
        got = resample_to(tf.constant(clip), tf.constant(rate), 8000).numpy()
        np.testing.assert_allclose(got, resample(clip, rate, 8000), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample_rate must be one of"):
        resample_to(tf.constant(clip), tf.constant(12345), 8000)


def test_tflite_takes_clips_at_the_training_rate(run):
    out = run / "lite" / "model.tflite"
    result = CliRunner().invoke(main, ["export", str(run / "run"), "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files, expected = _pipeline(run, run / "tones")
    clips = []
    for path in files:
        with wave.open(path) as handle:
            clips.append(np.frombuffer(handle.readframes(handle.getnframes()), "<i2") / 32768.0)
    clips = np.stack(clips).astype(np.float32)
    np.testing.assert_allclose(tflite_outputs(out, clips), expected, atol=1e-3)


def test_predict_wav_files_from_the_run_and_the_export_agree(run):
    files, expected = _pipeline(run, run / "tones22k")
    for source in (run / "run", run / "run" / "export" / "saved_model"):
        result = CliRunner().invoke(main, ["predict", str(source), str(run / "tones22k"), "--format", "jsonl"])
        assert result.exit_code == 0, result.output
        rows = {json.loads(line)["input"]: json.loads(line) for line in result.output.splitlines()}
        names = json.loads((run / "run" / "metrics.json").read_text())["class_names"]
        for path, p in zip(files, expected):
            top = rows[path]["top"][0]
            assert top["label"] == names[int(p.argmax())]
            assert top["probability"] == pytest.approx(float(p.max()), abs=1e-5)


@pytest.mark.slow  # predict from a run and from an export on five encodings
def test_predict_reads_flac_and_wav_encodings_beyond_16_bit_pcm(run):
    import soundfile

    mixed = run / "mixed"
    encodings = [(".flac", "PCM_16", 22050), (".wav", "PCM_24", 22050), (".wav", "FLOAT", 22050),
                 (".wav", "PCM_16", 96000), ("-extensible.wav", "PCM_16", 22050)]
    for index, source in enumerate(sorted((run / "tones22k").rglob("*.wav"))):
        samples, rate = soundfile.read(str(source), dtype="float32")
        suffix, subtype, target = encodings[index % len(encodings)]
        if target != rate:
            samples = resample(samples, rate, target)
        out = mixed / source.parent.name / f"{source.stem}{suffix}"
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix.startswith("-extensible"):  # the header multichannel recorders write
            soundfile.write(str(out), np.stack([samples, samples], axis=1), target, subtype=subtype, format="WAVEX")
            with open(out, "rb") as file:
                assert b"\xfe\xff" in file.read(40)  # WAVE_FORMAT_EXTENSIBLE
        else:
            soundfile.write(str(out), samples, target, subtype=subtype)
    files, expected = _pipeline(run, mixed)
    assert {os.path.splitext(f)[1] for f in files} == {".flac", ".wav"}
    for source in (run / "run", run / "run" / "export" / "saved_model"):
        result = CliRunner().invoke(main, ["predict", str(source), str(mixed), "--format", "jsonl"])
        assert result.exit_code == 0, result.output
        rows = {json.loads(line)["input"]: json.loads(line) for line in result.output.splitlines()}
        for path, p in zip(files, expected):
            # 16-bit PCM carries the clip to serving_wav: within its quantisation of 24-bit and float clips.
            assert rows[path]["top"][0]["probability"] == pytest.approx(float(p.max()), abs=1e-3), path
