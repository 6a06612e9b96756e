"""The `tfft` command: user mistakes end in one line and exit code 2; runs write results."""

import json
import os

import keras
import pytest
from click.testing import CliRunner

from tfft.cli import main
from tfft.testing import tiny_resnet, write_image_folder, write_recipe

pytestmark = pytest.mark.filterwarnings("ignore")

TINY = """
    from tfft.testing import TinyTrainer
    trainer = TinyTrainer
    backbone = dict(input_size=32)
    data = dict(path={data!r}, batch_size=8, augment={{}}, validation_split=0.25)
    schedule = dict(kind="two_phase", head_epochs=1, epochs=2, unfreeze=1, lr=0.01, finetune_lr=0.01)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    write_image_folder(directory, num_classes=3, per_class=12, size=32)
    return str(directory)


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output.strip(), result


def _one_line_error(result, *fragments):
    code, output, raw = result
    assert code == 2, output
    assert raw.exception is None or isinstance(raw.exception, SystemExit)
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0]


def test_user_mistakes_end_in_one_line_and_exit_code_2(tmp_path, data_dir):
    recipe = write_recipe(tmp_path / "tiny.py", TINY.format(data=data_dir))
    _one_line_error(_invoke("run", tmp_path / "missing.py"), "Recipe file not found")
    _one_line_error(_invoke("run", recipe, "--set", "schedule.epoch=3"), "Unknown recipe key 'schedule.epoch'", "Did you mean 'epochs'?")
    _one_line_error(_invoke("plan", recipe, "--set", "schedule.lr=fast"), "schedule.lr must be a rate or 'find'")
    syntax = write_recipe(tmp_path / "syntax.py", "data = dict(path=\n")
    _one_line_error(_invoke("run", syntax), "Syntax error in recipe", "line 1")
    stages = "[{'epochs': 1, 'train': ['conv9'], 'lr': 0.01}]"
    _one_line_error(
        _invoke("run", recipe, "--set", "schedule.kind=custom", "--set", f"schedule.stages={stages}", "--out", tmp_path / "r1"),
        "Unknown layer group 'conv9'", "Known groups: ['stem', 'conv2', 'conv3', 'conv4', 'head']",
    )
    assert not (tmp_path / "r1").exists()


def test_data_mistakes_fail_before_training_and_write_nothing(tmp_path, data_dir):
    recipe = write_recipe(tmp_path / "tiny.py", TINY.format(data=data_dir))
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_invoke("run", recipe, "--set", f"data.path={empty}", "--out", tmp_path / "r"), str(empty))
    broken = tmp_path / "broken"
    write_image_folder(broken, num_classes=2, per_class=4, size=16)
    (broken / "class1" / "scan_17.png").write_bytes(b"not an image at all")
    _one_line_error(_invoke("run", recipe, "--set", f"data.path={broken}", "--out", tmp_path / "r"), "scan_17.png")
    one_class = tmp_path / "one"
    write_image_folder(one_class, num_classes=1, per_class=4, size=16)
    _one_line_error(_invoke("run", recipe, "--set", f"data.path={one_class}", "--out", tmp_path / "r"), "class")
    assert not (tmp_path / "r").exists()


def test_plan_prints_every_stage_without_training(tmp_path, data_dir):
    recipe = write_recipe(tmp_path / "tiny.py", TINY.format(data=data_dir))
    code, output, _ = _invoke("plan", recipe, "--set", "schedule.decay=0.5", "--set", "schedule.unfreeze=2")
    assert code == 0, output
    assert "stage 1/2 'head'" in output and "stage 2/2 'finetune'" in output
    finetune = output.split("stage 2/2")[1].splitlines()
    rows = {line.split()[0]: line.split() for line in finetune if line.strip().split(" ")[0] in ("stem", "conv3", "conv4", "head")}
    assert rows["stem"][1] == "no" and rows["conv4"][1] == "yes"
    assert rows["conv4"][-1] == "0.005" and rows["conv3"][-1] == "0.0025" and rows["head"][-1] == "0.01"


SUBCLASS = """
    import keras
    from tfft.testing import TinyTrainer

    class MarkEpochs(keras.callbacks.Callback):
        def __init__(self, path):
            super().__init__()
            self.path = path

        def on_epoch_end(self, epoch, logs=None):
            with open(self.path, "a") as f:
                f.write(f"{{epoch}}\\n")

    class WideHead(TinyTrainer):
        def build_head(self, features):
            x = keras.layers.GlobalMaxPooling2D(name="my_pool")(features)
            x = keras.layers.Dense(16, activation="relu", name="my_hidden")(x)
            return keras.layers.Dense(self.num_classes, name="my_logits")(x)

        def build_callbacks(self, stage, index):
            return [MarkEpochs({marks!r})]

    trainer = WideHead
    backbone = dict(input_size=32)
    data = dict(path={data!r}, batch_size=8, augment={{}}, validation_split=0.25)
    schedule = dict(kind="two_phase", head_epochs=1, epochs=2, unfreeze=1)
"""


def test_run_with_a_trainer_subclass_from_the_recipe(tmp_path, data_dir):
    marks = tmp_path / "marks.txt"
    recipe = write_recipe(tmp_path / "sub.py", SUBCLASS.format(data=data_dir, marks=str(marks)))
    out = tmp_path / "run"
    code, output, raw = _invoke("run", recipe, "--out", out)
    assert code == 0, (output, raw.exception)
    assert f"tensorboard --logdir {out / 'tensorboard'}" in output
    assert marks.read_text().split() == ["0", "1"]  # the callback ran in both stages
    model = keras.models.load_model(out / "model.keras")
    assert {"my_pool", "my_hidden", "my_logits"} <= {layer.name for layer in model.layers}
    with open(out / "recipe.json") as f:
        assert json.load(f)["trainer"].endswith("WideHead")
    assert (out / "recipe.py").read_text() == open(recipe).read()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class", "confusion_matrix"}


def test_run_a_keras_file_backbone_and_refuse_a_used_run_directory(tmp_path, data_dir):
    path = tmp_path / "backbone.keras"
    tiny_resnet(32).save(path)
    recipe = write_recipe(tmp_path / "file.py", f"""
        backbone = dict(name={str(path)!r}, weights=None, family="resnet", input_size=32)
        data = dict(path={data_dir!r}, batch_size=8, augment={{}})
        schedule = dict(kind="chain_thaw", stage_epochs=1, head_epochs=1)
    """)
    code, output, raw = _invoke("plan", recipe)
    assert code == 0, (output, raw.exception)
    assert "'thaw_conv2'" in output and "stage 6/6 'all'" in output
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_line_error(_invoke("run", recipe, "--out", out), "already holds files", "--overwrite")
    assert os.listdir(out) == ["notes.txt"]
    # --overwrite replaces the old run only once the new one has passed every check.
    _one_line_error(_invoke("run", recipe, "--out", out, "--overwrite", "--set", f"data.path={tmp_path / 'nowhere'}"), "nowhere")
    assert os.listdir(out) == ["notes.txt"]
