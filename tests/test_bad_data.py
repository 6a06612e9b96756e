"""Bad data files: an early error naming the file, or skipped and listed; never half a run."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tfft.cli import main
from tfft.data import audio_datasets, image_datasets, text_datasets
from tfft.errors import DataError
from tfft.testing import write_image_folder, write_recipe, write_tone_folder

pytestmark = pytest.mark.filterwarnings("ignore")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jpeg_folder(root):
    import numpy as np
    import tensorflow as tf

    write_image_folder(root, num_classes=2, per_class=6, size=32)
    image = tf.io.encode_jpeg(tf.cast(np.full((32, 32, 3), 120), tf.uint8)).numpy()
    (root / "class0" / "empty.jpg").write_bytes(b"")
    (root / "class0" / "truncated.jpg").write_bytes(image[: len(image) // 3])
    (root / "class1" / "notes.png").write_text("these are notes, not an image")
    return {"empty.jpg", "truncated.jpg", "notes.png"}


def _wav_folder(root):
    write_tone_folder(root, per_class=5)
    good = root / "tone500" / "000.wav"
    (root / "tone500" / "empty.wav").write_bytes(b"")
    (root / "tone500" / "truncated.wav").write_bytes(good.read_bytes()[:60])
    (root / "tone1200" / "header.wav").write_bytes(b"RIFX" + good.read_bytes()[4:])
    return {"empty.wav", "truncated.wav", "header.wav"}


def _text_folder(root):
    for label in ("billing", "shipping"):
        os.makedirs(root / label)
        for i in range(5):
            (root / label / f"{i}.txt").write_text(f"a {label} question number {i}")
    (root / "billing" / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "shipping" / "blank.txt").write_text("   \n")
    return {"latin1.txt", "blank.txt"}


@pytest.mark.parametrize("kind", ["image", "audio", "text"])
def test_skip_drops_exactly_the_unreadable_files_and_raise_names_the_first(tmp_path, kind):
    root = tmp_path / kind
    bad = {"image": _jpeg_folder, "audio": _wav_folder, "text": _text_folder}[kind](root)
    build = {
        "image": lambda **kw: image_datasets(str(root), image_size=32, batch_size=4, **kw),
        "audio": lambda **kw: audio_datasets(str(root), batch_size=4, sample_rate=8000, duration=0.5, n_fft=256,
                                             hop_length=80, n_mels=16, **kw),
        "text": lambda **kw: text_datasets(path=str(root), batch_size=4, **kw),
    }[kind]
    data = build(on_error="skip")
    assert {os.path.basename(path) for path, _ in data.skipped} == bad
    listed = {os.path.basename(p) for split in data.items.values() for p, _ in split} if kind != "text" else set()
    assert not listed & bad
    for _ in data.epoch(0):  # every batch decodes
        pass
    with pytest.raises(DataError) as error:
        build(on_error="raise")
    assert any(name in str(error.value) for name in bad)


def test_a_run_that_skips_writes_skipped_txt_and_says_how_many(tmp_path):
    root = tmp_path / "images"
    bad = _jpeg_folder(root)
    recipe = write_recipe(tmp_path / "r.py", f"""
        from tfft.testing import TinyTrainer
        trainer = TinyTrainer
        backbone = dict(input_size=32)
        data = dict(path={str(root)!r}, batch_size=4, augment={{}}, validation_split=0.25, on_error="skip")
        schedule = dict(kind="custom", stages=[dict(steps=4, train="head", lr=0.01)])
    """)
    result = CliRunner().invoke(main, ["run", recipe, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"left out 3 files that cannot be read (data.on_error='skip'): see {tmp_path / 'run' / 'skipped.txt'}" \
        in result.output
    rows = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert {os.path.basename(row.split("\t")[0]) for row in rows} == bad
    failing = CliRunner().invoke(main, ["run", recipe, "--set", "data.on_error='raise'", "--out", str(tmp_path / "r2")])
    assert failing.exit_code == 2
    assert "--set data.on_error=skip" in failing.output and "--set data.verify=false" in failing.output
    assert not (tmp_path / "r2").exists()


def _cli(*args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "tfft.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("cached, when", [(False, "mid-epoch"), (True, "while the frozen backbone's outputs were computed")])
def test_without_verify_a_bad_file_is_one_line_and_tensorflow_logs_stay_out(tmp_path, cached, when):
    root = tmp_path / "images"
    write_image_folder(root, num_classes=2, per_class=6, size=32)
    (root / "class1" / "notes.png").write_text("these are notes, not an image")
    recipe = write_recipe(tmp_path / "r.py", f"""
        from tfft.testing import TinyTrainer
        trainer = TinyTrainer
        backbone = dict(input_size=32)
        data = dict(path={str(root)!r}, batch_size=4, augment={{}}, validation_split=0.25, verify=False, cache=False)
        schedule = dict(kind="custom", stages=[dict(steps=6, train="head", lr=0.01)])
        runtime = dict(cache_features={cached})
    """)
    result = _cli("run", recipe, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"error: A training file could not be read {when}: {root / 'class1' / 'notes.png'}. Fix or delete it"), lines
    assert "Traceback" not in result.stderr and "cudart_stub" not in result.stderr


@pytest.mark.slow
def test_check_data_reports_counts_unreadable_files_and_duplicates(tmp_path):
    root = tmp_path / "images"
    _jpeg_folder(root)
    validation = tmp_path / "validation"
    write_image_folder(validation, num_classes=2, per_class=2, size=32, seed=5)
    first = sorted((root / "class0").glob("*.png"))[0]
    (validation / "class0" / "copy.png").write_bytes(first.read_bytes())
    recipe = write_recipe(tmp_path / "r.py", f"""
        data = dict(path={str(root)!r}, validation_path={str(validation)!r}, image_size=32)
    """)
    result = _cli("check-data", recipe)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "class0" in result.stdout and "training" in result.stdout and "validation" in result.stdout
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert sum("unreadable:" in line for line in problems) == 3
    assert any("duplicate across training and validation" in line and "copy.png" in line for line in problems)
    assert "JPEG library" not in result.stderr  # libjpeg's own complaints stay out too
    clean = tmp_path / "clean"
    write_image_folder(clean, num_classes=2, per_class=6, size=32)
    good = write_recipe(tmp_path / "good.py", f"data = dict(path={str(clean)!r}, image_size=32)\n")
    result = _cli("check-data", good)
    assert result.returncode == 0 and "no problems found" in result.stdout
