"""Fine-tuning on recordings: the audio CNN, a tfft-trained backbone again, an ImageNet CNN."""

import json
import os

import numpy as np
import pytest

from tfft.recipe import Recipe
from tfft.testing import write_tone_folder
from tfft.trainer import Trainer

pytestmark = pytest.mark.filterwarnings("ignore")

AUDIO = ["data.kind='audio'", "data.sample_rate=8000", "data.duration=0.5", "data.n_fft=256", "data.hop_length=64",
         "data.n_mels=32", "data.batch_size=8", "data.validation_split=0.25"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tones")
    write_tone_folder(directory, per_class=8)
    return str(directory)


class Recording(Trainer):
    def on_stage_begin(self, stage, index):
        self.begin = getattr(self, "begin", []) + [{g.name: [v.numpy().copy() for v in g.variables] for g in self.groups}]

    def on_stage_end(self, stage, index, logs):
        self.end = getattr(self, "end", []) + [{g.name: [v.numpy().copy() for v in g.variables] for g in self.groups}]


@pytest.fixture(scope="module")
def pretrained(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tones"
    stages = [{"name": "all", "epochs": 3, "train": "all", "lr": 3e-3}]
    recipe = Recipe().with_overrides(AUDIO + [f"data.path={tones!r}", "backbone.name='audio_cnn'", "backbone.weights=None",
                                              "schedule.kind='custom'", f"schedule.stages={stages!r}", "output.log_every=1"])
    trainer = Trainer(recipe, out_dir=str(out), verbose=0)
    return trainer, trainer.run()


def test_audio_cnn_trains_on_spectrograms_and_shows_misclassified_clips(pretrained):
    trainer, metrics = pretrained
    assert [g.name for g in trainer.groups] == ["block1", "block2", "block3", "block4", "head"]
    assert trainer.model.input_shape == (None, 59, 32, 1)
    # A random-init backbone trains BatchNorm ("auto"), and its statistics are recomputed.
    assert trainer.stages[0].train_bn is True
    assert set(metrics["per_class"]) == {"tone500", "tone1200", "tone2500"}
    if metrics["accuracy"] < 1.0:
        from tensorboard.backend.event_processing import event_accumulator as ea

        events = ea.EventAccumulator(os.path.join(trainer.out_dir, "tensorboard", "validation"), size_guidance={ea.TENSORS: 0})
        events.Reload()
        assert {"misclassified/all/audio", "misclassified/all/images"} <= set(events.Tags()["tensors"])


def test_a_backbone_trained_with_tfft_is_fine_tuned_again(pretrained, tones, tmp_path):
    trainer, _ = pretrained
    saved = os.path.join(trainer.out_dir, "model.keras")
    recipe = Recipe().with_overrides(AUDIO + [
        f"data.path={tones!r}", f"backbone.name={saved!r}", "schedule.kind='two_phase'", "schedule.head_epochs=1",
        "schedule.epochs=2", "schedule.unfreeze=1", "schedule.train_bn=False"])
    again = Recording(recipe, out_dir=str(tmp_path / "again"), verbose=0)
    again.run()
    assert [g.name for g in again.groups] == ["block1", "block2", "block3", "block4", "head"]  # family found by name
    learned = {v.path: v.numpy() for v in trainer.model.get_layer("audio_cnn").weights}
    start = again.begin[0]["block1"]
    block1 = again.groups[0].variables
    assert all(np.array_equal(value, learned[v.path]) for v, value in zip(block1, start))  # starts from the saved weights
    before, after = again.begin[1], again.end[1]
    assert all(np.array_equal(a, b) for a, b in zip(before["block3"], after["block3"]))
    assert not all(np.array_equal(a, b) for a, b in zip(before["block4"], after["block4"]))


def test_an_imagenet_cnn_reads_spectrograms_as_three_channel_images(tones, tmp_path):
    recipe = Recipe().with_overrides(AUDIO + [
        f"data.path={tones!r}", "backbone.name='MobileNetV3Small'", "backbone.weights=None", "schedule.kind='custom'",
        "schedule.stages=[{'epochs': 1, 'train': 'head', 'lr': 0.01}]"])
    trainer = Trainer(recipe, out_dir=str(tmp_path / "run"), verbose=0)
    metrics = trainer.run()
    assert trainer.model.input_shape == (None, 59, 32, 3)
    assert trainer.group_names[0] == "stem" and 0.0 <= metrics["accuracy"] <= 1.0
    with open(os.path.join(trainer.out_dir, "recipe.json")) as f:
        assert json.load(f)["data"]["kind"] == "audio"


def test_a_saved_backbone_for_other_spectrograms_is_refused(pretrained, tones):
    from tfft.errors import BackboneError

    trainer, _ = pretrained
    recipe = Recipe().with_overrides(AUDIO + [f"data.path={tones!r}", "data.n_mels=40",
                                              f"backbone.name={os.path.join(trainer.out_dir, 'model.keras')!r}"])
    with pytest.raises(BackboneError, match="takes spectrograms of 59 frames x 32 mels.*59 x 40"):
        Trainer(recipe, verbose=0).plan()


def test_spectrograms_reach_imagenet_cnns_as_pixels_through_their_own_preprocessing():
    from tfft.backbones import build_backbone
    from tfft.errors import BackboneError

    resnet = build_backbone("ResNet50", weights=None, modality="audio", spectrogram_shape=(59, 32))
    spectrograms = np.stack([np.zeros((59, 32, 1)), np.full((59, 32, 1), 5.0)]).astype("float32")
    images = np.asarray(resnet.preprocess(spectrograms))
    assert images.shape == (2, 59, 32, 3)
    # 0 -> pixel 128, 5 std -> clipped to 255, then caffe-style BGR mean subtraction.
    np.testing.assert_allclose(images[0, 0, 0], [128 - 103.939, 128 - 116.779, 128 - 123.68], atol=1e-3)
    np.testing.assert_allclose(images[1, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68], atol=1e-3)
    with pytest.raises(BackboneError, match="audio_cnn has no pretrained weights"):
        build_backbone("audio_cnn", weights="pretrained", modality="audio", spectrogram_shape=(59, 32))
