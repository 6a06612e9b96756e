"""TFDS for images and recordings (`tfft/data/tfds_files.py`): a split written once as class
folders in the cache, then read by the folder pipeline; tested on `tfds.testing.mock_data`."""

import os

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from tfft.errors import DataError
from tfft.recipe import Recipe
from tfft.trainer import Trainer


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _datasets(*overrides):
    recipe = Recipe().with_overrides(list(overrides))
    trainer = Trainer(recipe, out_dir=os.devnull, verbose=0, dry_run=True, save=False)
    trainer.backbone = trainer.build_backbone()
    return trainer.build_datasets()


IMAGE = ["data.kind='image'", "backbone.name='image_cnn'", "backbone.weights=None", "backbone.input_size=32",
         "data.batch_size=4"]
AUDIO = ["data.kind='audio'", "backbone.name='audio_cnn'", "backbone.weights=None", "data.batch_size=4",
         "data.duration=0.1", "data.augment={}"]


def test_tf_flowers_is_written_once_as_class_folders_of_its_own_bytes(cache):
    with tfds.testing.mock_data(num_examples=30):
        data = _datasets(*IMAGE, "data.tfds='tf_flowers'", "data.tfds_split=['train', None]")
        flowers = tfds.builder("tf_flowers").info.features["label"].names
        stored = [example["image"] for example in tfds.as_numpy(
            tfds.load("tf_flowers", split="train", decoders={"image": tfds.decode.SkipDecoding()}))]
    folder = cache / "tfds" / "tf_flowers" / "3.0.1" / "train"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(files) == 30 and {p.parent.name for p in files} <= set(flowers)
    assert set(data.class_names) == {p.parent.name for p in files}
    # The bytes TFDS stores, not a re-encoding.
    by_index = {int(p.stem): p.read_bytes() for p in files}
    assert all(by_index[i] == stored[i] for i in range(30)) and files[0].suffix == ".png"
    assert data.num_train + data.num_validation == 30

    written = {p: p.stat().st_mtime_ns for p in files}
    with tfds.testing.mock_data(num_examples=30):
        _datasets(*IMAGE, "data.tfds='tf_flowers'", "data.tfds_split=['train', None]")
    assert {p: p.stat().st_mtime_ns for p in files} == written  # read from the cache, not written again


def test_speech_commands_splits_become_wav_folders_at_the_data_sets_rate(cache):
    with tfds.testing.mock_data(num_examples=48):
        data = _datasets(*AUDIO, "data.tfds='speech_commands'", "data.tfds_split=['train', 'validation']")
        clips = [example["audio"] for example in tfds.as_numpy(tfds.load("speech_commands", split="validation"))]
    root = cache / "tfds" / "speech_commands" / "0.0.3"
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]
    wav = sorted((root / "validation").rglob("*.wav"))
    assert len(wav) == 48 and data.num_validation == 48
    samples, rate = soundfile.read(str(wav[0]), dtype="int16")
    assert rate == 16000 and np.array_equal(samples, clips[int(wav[0].stem)])


def test_tfds_errors_name_the_key():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(DataError, match=r"no dataset named 'tf_flower'.*Did you mean \['tf_flowers'"):
            _datasets(*IMAGE, "data.tfds='tf_flower'")
        with pytest.raises(DataError, match="Give one data source: data.path, data.manifest or data.tfds. "
                                            "Received: data.path, data.tfds"):
            _datasets(*IMAGE, "data.tfds='tf_flowers'", "data.path='/tmp'")
        with pytest.raises(DataError, match="has no Image feature"):
            _datasets(*IMAGE, "data.tfds='speech_commands'", "data.tfds_split=['train', None]")


def test_integer_audio_of_any_width_is_written_at_its_16_bit_scale(tmp_path):
    from tfft.data.tfds_files import write_audio

    class Feature:
        sample_rate = 8000

    clip = np.array([0, 1000, -32768, 32767], np.int64)  # TFDS's default Audio dtype
    path = write_audio(clip, Feature(), str(tmp_path / "clip"))
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and samples.tolist() == clip.tolist() and soundfile.info(path).subtype == "PCM_16"
    floats, _ = soundfile.read(write_audio(np.array([0.5, -0.25], np.float32), Feature(), str(tmp_path / "f")))
    assert floats.tolist() == [0.5, -0.25]


def test_class_and_split_names_become_plain_folder_names():
    from tfft.data.tfds_files import _safe

    assert [_safe(n) for n in ["..", ".hidden", "a/b", "train[:80%]", ""]] == ["_.", "_hidden", "a_b", "train[_80%]", "_"]
