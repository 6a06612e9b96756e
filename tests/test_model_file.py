import json
import zipfile

import keras
import pytest

from tfft import Trainer
from tfft.backbones import build_backbone
from tfft.errors import BackboneError
from tfft.model_file import extracted_assets, read_metadata, write_assets, write_metadata
from tfft.recipe import Recipe
from tfft.testing import write_image_folder


def _custom_cnn(path, size=32):
    """A CNN with layer names no family knows: its groups come from the recipe."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for block, width in (("low", 8), ("mid", 16), ("top", 16)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"{block}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{block}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{block}_relu")(x)
    keras.Model(inputs, x, name="custom_cnn").save(path)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_file")
    write_image_folder(root / "images", num_classes=3, per_class=8, size=32)
    _custom_cnn(root / "custom.keras")
    recipe = Recipe().with_overrides([
        f"data.path={root / 'images'}", "data.batch_size=8", "data.augment={}", f"backbone.name={root / 'custom.keras'}",
        "backbone.input_size=32", "backbone.groups={'low': 'low_', 'mid': 'mid_', 'top': 'top_'}",
        "backbone.weights=None", "schedule.kind='two_phase'", "schedule.steps=4", "schedule.lr=0.01",
        "schedule.finetune_lr=0.01",
    ])
    trainer = Trainer(recipe, out_dir=str(root / "run"), verbose=0)
    trainer.run()
    return trainer, root / "run" / "model.keras"


def test_model_keras_holds_tfft_json_and_still_loads_with_keras(fine_tuned):
    trainer, path = fine_tuned
    metadata = read_metadata(path)
    assert metadata["modality"] == "image"
    assert metadata["class_names"] == trainer.datasets.class_names
    assert metadata["groups"] == [["low", "low_conv"], ["mid", "mid_conv"], ["top", "top_conv"]]
    assert metadata["input_shape"] == [32, 32, 3]
    assert keras.models.load_model(path).output.shape == (None, 3)


def test_a_fine_tuned_model_brings_its_groups_and_input_size(fine_tuned):
    trainer, path = fine_tuned
    backbone = build_backbone(str(path))  # no backbone.groups, no input_size
    from tfft.freezing import layer_groups

    groups = layer_groups(backbone.model, rules=backbone.rules)
    assert [g.name for g in groups] == ["low", "mid", "top"]
    before = {g.name: [layer.name for layer in g.layers] for g in trainer.groups if g.name != "head"}
    assert {g.name: [layer.name for layer in g.layers] for g in groups} == before
    assert all(g.num_params > 0 for g in groups)
    assert backbone.image_size == (32, 32)


@pytest.mark.parametrize("key, value", [("input_size", 64), ("image_size", 48)])
def test_a_wrong_input_size_for_a_keras_file_names_the_key(fine_tuned, key, value):
    _, path = fine_tuned
    options = dict(input_size=value) if key == "input_size" else dict(image_size=value)
    with pytest.raises(BackboneError) as error:
        build_backbone(str(path), **options)
    where = "backbone.input_size" if key == "input_size" else "data.image_size"
    assert str(error.value).startswith(f"custom_cnn takes 32 x 32 images, but {where}={value}")


def test_metadata_is_written_once_and_absent_from_other_files(tmp_path):
    path = tmp_path / "plain.keras"
    _custom_cnn(path)
    assert read_metadata(path) is None
    write_metadata(path, dict(modality="image"))
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("tfft.json")) == dict(modality="image", format=1)
    with pytest.raises(ValueError, match="already holds tfft.json"):
        write_metadata(path, dict(modality="image"))
    assert read_metadata(tmp_path / "missing.keras") is None


def test_assets_go_under_tfft_and_come_back_as_files(tmp_path):
    path = tmp_path / "plain.keras"
    _custom_cnn(path)
    with extracted_assets(path, "preprocessor") as directory:
        assert directory is None
    source = tmp_path / "files"
    (source / "preprocessor" / "assets").mkdir(parents=True)
    (source / "preprocessor" / "preprocessor.json").write_text("{}")
    (source / "preprocessor" / "assets" / "vocabulary.txt").write_bytes(b"[PAD]\n\xc3\xa9\n")
    write_assets(path, source)
    with zipfile.ZipFile(path) as archive:
        assert sorted(n for n in archive.namelist() if n.startswith("tfft/")) == [
            "tfft/preprocessor/assets/vocabulary.txt", "tfft/preprocessor/preprocessor.json"]
    with extracted_assets(path, "preprocessor") as directory:
        assert (tmp_path / directory / "assets" / "vocabulary.txt").read_bytes() == b"[PAD]\n\xc3\xa9\n"
        kept = directory
    assert not (tmp_path / kept).exists()  # a temporary directory, gone after use
    assert keras.models.load_model(path).name == "custom_cnn"  # Keras ignores tfft's entries


def test_a_tokenizer_this_keras_hub_cannot_read_is_one_error(tmp_path):
    pytest.importorskip("keras_hub")
    from tfft.modalities.text.encoders import stored_preprocessor

    path = tmp_path / "plain.keras"
    _custom_cnn(path)
    (tmp_path / "files" / "preprocessor").mkdir(parents=True)
    (tmp_path / "files" / "preprocessor" / "tokenizer.json").write_text("{}")
    write_assets(path, tmp_path / "files")
    with pytest.raises(BackboneError, match=r"plain.keras holds a tokenizer this keras-hub cannot read \(FileNotFoundError"):
        stored_preprocessor(str(path))
