import dataclasses
import os
import re
import subprocess
import sys

import pytest

from tfft import modalities
from tfft.errors import DataError, RecipeError
from tfft.recipe import CommonDataKeys, DataConfig, load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_data_config_is_the_common_keys_then_each_modalitys():
    names = [field.name for field in dataclasses.fields(DataConfig)]
    common = [field.name for field in dataclasses.fields(CommonDataKeys)]
    assert names[: len(common)] == common
    for kind in modalities.KINDS:
        own = [field.name for field in dataclasses.fields(modalities.keys_of(kind))]
        assert set(own) <= set(names) and not set(own) & set(common)
    assert modalities.readers_of("n_mels") == ["audio"]
    assert modalities.readers_of("sequence_length") == ["text"]
    assert modalities.readers_of("batch_size") == []


@pytest.mark.parametrize("key, message", [
    ("data.n_mels=32", "data.n_mels is an audio key; data.kind is 'image'. Received: data.n_mels=32"),
    ("data.jsonl=x.jsonl", "data.jsonl is a text key; data.kind is 'image'. Received: data.jsonl='x.jsonl'"),
])
def test_a_key_of_another_modality_says_whose_it_is(key, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(os.path.join(ROOT, "recipes", "tumor_resnet.py"), overrides=[key])
    assert str(error.value) == message


def test_a_modalitys_own_keys_and_defaults_are_accepted():
    recipe = load_recipe(os.path.join(ROOT, "recipes", "tumor_resnet.py"),
                         overrides=["data.kind=audio", "data.n_mels=32", "data.sequence_length=128"])
    assert recipe.data.n_mels == 32


def test_unknown_kind_names_the_key():
    with pytest.raises(DataError, match=r"Expected one of \['image', 'text', 'audio'\]. Received: data.kind='video'"):
        modalities.get("video")


def test_registry_modules_load_lazily_and_match_their_kind():
    code = ("import sys, tfft.recipe; "
            "print(any(m.startswith('tfft.modalities.') and m.endswith('.modality') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    for kind in modalities.KINDS:
        assert modalities.get(kind).name == kind
        assert modalities.get(kind) is modalities.get(kind)


def test_each_modality_resolves_augment_its_own_way():
    assert modalities.get("image").resolve_augment(None) == modalities.get("image").augment
    assert modalities.get("audio").resolve_augment("strong")["time_mask"] == 3
    assert modalities.get("image").resolve_augment({}) == {}
    with pytest.raises(DataError, match="Text data has no augmentation"):
        modalities.get("text").resolve_augment("strong")


# Outside tfft/modalities/, code asks the registry; it does not compare data.kind itself.
_BRANCH = re.compile(r"""(\bkind|modality)\s*(==|!=|\bin\b)\s*[(\[]?\s*["'](image|text|audio)["']""")


def test_no_modality_branch_outside_the_modality_packages():
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "tfft")):
        if os.path.join("tfft", "modalities") in folder:
            continue
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    found += [f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}"
                              for n, line in enumerate(handle, 1) if _BRANCH.search(line)]
    assert found == []


def test_audio_keys_default_to_the_feature_settings_they_build():
    from tfft.modalities.audio.features import AudioFeatures
    from tfft.modalities.audio.keys import AudioKeys

    features = AudioFeatures()
    for field in dataclasses.fields(AudioFeatures):
        assert getattr(AudioKeys(), field.name) == getattr(features, field.name), field.name
