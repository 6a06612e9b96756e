"""`tfft export` and `predict` of a text run (the real MiniLM): the SavedModel takes UTF-8
strings and tokenises them in the graph with core TensorFlow ops, so TensorFlow alone
serves it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tfft.cli import main
from tfft.testing import run_probabilities, write_recipe

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

RECIPE = """
    backbone = dict(name="minilm-l6")
    data = dict(kind="text", manifest={data!r}, batch_size=8, validation_split=0.25, sequence_length=16)
    schedule = dict(kind="two_phase", steps=6, lr=0.003, finetune_lr=1e-4)
"""

# TensorFlow alone: not tfft, keras-hub or TensorFlow Text (whose ops keras-hub's tokenizers run on).
SERVE = """
import json, sys
import tensorflow as tf
texts = json.loads(sys.stdin.read())
out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](text=tf.constant(texts))
print(json.dumps(dict(probabilities=out["probabilities"].numpy().tolist(),
                      imported=sorted(m for m in sys.modules if m.split(".")[0] in ("tfft", "keras_hub", "tensorflow_text")))))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("keras_hub")
    root = tmp_path_factory.mktemp("export_text")
    rows = ["text,label"] + [f"please refund order {i} it was broken,refund" for i in range(12)] + \
        [f"my password reset link {i} fails,account" for i in range(12)]
    (root / "tickets.csv").write_text("\n".join(rows) + "\n")
    (root / "new.csv").write_text("text,label\nrefund my broken order please,refund\nthe reset link fails again,account\n"
                                  '"Refund my BROKEN order, please!!! Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u6771\u4eac",refund\n'
                                  '"my password-reset link (sent twice) never works; I tried and tried and tried '
                                  'again, every single day of this long week",account\n')
    recipe = write_recipe(root / "text.py", RECIPE.format(data=str(root / "tickets.csv")))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def _pipeline(root, data):
    return run_probabilities(root / "run", data)


def test_saved_model_takes_strings(run):
    texts, expected = _pipeline(run, run / "new.csv")
    served = subprocess.run([sys.executable, "-c", SERVE, str(run / "run" / "export" / "saved_model")],
                            input=json.dumps(texts), capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert served.returncode == 0, served.stderr[-2000:]
    out = json.loads(served.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    np.testing.assert_allclose(np.array(out["probabilities"]), expected, atol=1e-5)


def test_tflite_is_refused_with_the_reason(run):
    result = CliRunner().invoke(main, ["export", str(run / "run"), "--format", "tflite"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: TFLite cannot serve this text model: TFLite has no ops for its "
                                     "tokenizer (strings in, token ids out); export a saved_model instead.")


def test_predict_reads_csv_jsonl_and_stdin(run):
    (run / "new.jsonl").write_text('{"text": "refund my broken order please"}\n{"text": "the reset link fails again"}\n')
    from_csv = CliRunner().invoke(main, ["predict", str(run / "run"), str(run / "new.csv"), "--format", "jsonl"])
    from_jsonl = CliRunner().invoke(main, ["predict", str(run / "run" / "export" / "saved_model"),
                                           str(run / "new.jsonl"), "--format", "jsonl"])
    from_stdin = CliRunner().invoke(main, ["predict", str(run / "run"), "-", "--format", "jsonl"],
                                    input="refund my broken order please\n\nthe reset link fails again\n")
    for result in (from_csv, from_jsonl, from_stdin):
        assert result.exit_code == 0, result.output
    rows = [[json.loads(line) for line in r.output.splitlines()] for r in (from_csv, from_jsonl, from_stdin)]
    assert [r["input"] for r in rows[0]] == [f"{run / 'new.csv'}:{number}" for number in range(1, 5)]
    assert [r["input"] for r in rows[2]] == ["-:1", "-:3"]
    _, expected = _pipeline(run, run / "new.csv")
    for got in rows:
        np.testing.assert_allclose([r["top"][0]["probability"] for r in got], expected.max(-1)[: len(got)], atol=1e-5)
