import pytest

from tfft.errors import RecipeError
from tfft.recipe import load_recipe, parse_value
from tfft.testing import write_recipe


def test_sections_defaults_and_shorthand(tmp_path):
    path = write_recipe(tmp_path / "r.py", """
        import os
        SIZE = 48
        backbone = "EfficientNetB0"
        data = dict(path="/data", batch_size=8, image_size=SIZE)
        schedule = dict(kind="chain_thaw", lr=3e-3)
        def helper():
            return 1
    """)
    recipe = load_recipe(path)
    assert recipe.backbone.name == "EfficientNetB0" and recipe.backbone.weights == "pretrained"
    assert recipe.data.batch_size == 8 and recipe.data.image_size == 48
    assert recipe.schedule.kind == "chain_thaw" and recipe.schedule.lr == 3e-3
    assert recipe.to_dict()["data"]["path"] == "/data"


def test_overrides_are_type_checked(tmp_path):
    path = write_recipe(tmp_path / "r.py", "data = dict(path='/data')\n")
    recipe = load_recipe(path, overrides=["schedule.epochs=12", "schedule.lr=1", "data.augment.flip=false", "data.path=2024"])
    assert recipe.schedule.epochs == 12
    assert recipe.schedule.lr == 1.0 and isinstance(recipe.schedule.lr, float)
    assert recipe.data.augment["flip"] is False and recipe.data.augment["rotation"] == 0.05
    assert recipe.data.path == "2024"
    with pytest.raises(RecipeError, match=r"schedule.epochs must be float or None. Received: schedule.epochs='many'"):
        load_recipe(path, overrides=["schedule.epochs=many"])
    with pytest.raises(RecipeError, match=r"Unknown recipe key 'data.pth'. Did you mean 'path'\?"):
        load_recipe(path, overrides=["data.pth=/x"])
    with pytest.raises(RecipeError, match="--set takes dotted.key=value"):
        load_recipe(path, overrides=["data.path"])
    with pytest.raises(RecipeError, match=r"Did you mean 'schedule'\?"):
        load_recipe(path, overrides=["schedul.epochs=3"])


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="Recipe file not found"):
        load_recipe(tmp_path / "missing.py")
    bad = write_recipe(tmp_path / "bad.py", "data = dict(path='/x'\n")
    with pytest.raises(RecipeError, match=r"Syntax error in recipe .*bad.py, line"):
        load_recipe(bad)
    unknown = write_recipe(tmp_path / "u.py", "datta = dict(path='/x')\n")
    with pytest.raises(RecipeError, match=r"unknown recipe section 'datta'. Did you mean 'data'\?"):
        load_recipe(unknown)
    wrong_type = write_recipe(tmp_path / "w.py", "data = dict(batch_size='8')\n")
    with pytest.raises(RecipeError, match=r"data.batch_size must be int. Received: data.batch_size='8'"):
        load_recipe(wrong_type)
    raises = write_recipe(tmp_path / "x.py", "import nonexistent_module_xyz\n")
    with pytest.raises(RecipeError, match="raised ModuleNotFoundError"):
        load_recipe(raises)


def test_demo_values_apply_before_overrides_and_trainer_class(tmp_path):
    path = write_recipe(tmp_path / "r.py", """
        import tfft
        class MyTrainer(tfft.Trainer):
            pass
        trainer = MyTrainer
        schedule = dict(epochs=10)
        demo = {"schedule.epochs": 3, "data.image_size": 32}
    """)
    assert load_recipe(path).schedule.epochs == 10
    demo = load_recipe(path, demo=True, overrides=["data.image_size=40"])
    assert demo.schedule.epochs == 3 and demo.data.image_size == 40
    assert demo.trainer.__name__ == "MyTrainer"
    not_trainer = write_recipe(tmp_path / "t.py", "trainer = dict\n")
    with pytest.raises(RecipeError, match="must be a tfft.Trainer subclass"):
        load_recipe(not_trainer)


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("1e-4") == 1e-4 and parse_value("True") is True
    assert parse_value("none") is None and parse_value("[1, 2]") == [1, 2] and parse_value("~/x") == "~/x"
