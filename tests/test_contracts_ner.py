"""recipes/contracts_ner.py end to end with the real MiniLM: a short run on the built-in
contract sentences, `tfft evaluate` on its CoNLL file, `tfft export`, and entity spans on
raw text from the SavedModel in a process with TensorFlow alone, the same as the model's."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tfft.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW = [
    "On 3 May 2024,  Acme Holdings Ltd. paid EUR 12,500 to Dr. Maria Chen.",
    "Any dispute shall be settled by the High Court of Justice in London.",
    "The parties agree that the Agreement terminates on 31 December 2026 unless Northwind GmbH pays $40,000.",
    "nothing to see here",
]
# TensorFlow alone: not tfft, keras-hub or TensorFlow Text.
SERVE = """
import json, sys
import tensorflow as tf
texts = json.loads(sys.stdin.read())
out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](text=tf.constant(texts))
rows = []
for i in range(len(texts)):
    n = int(out["entity_count"][i])
    rows.append([(int(out["entity_start"][i][j]), int(out["entity_end"][i][j]), out["entity_type"][i][j].numpy().decode(),
                  out["entity_text"][i][j].numpy().decode(), float(out["entity_score"][i][j])) for j in range(n)])
print(json.dumps(dict(rows=rows, imported=sorted(m for m in sys.modules
                                                  if m.split(".")[0] in ("tfft", "keras_hub", "tensorflow_text")))))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("keras_hub")
    root = tmp_path_factory.mktemp("contracts")
    os.environ["TFFT_CACHE"] = str(root / "cache")
    result = CliRunner().invoke(main, [
        "run", os.path.join(REPO, "recipes", "contracts_ner.py"), "--out", str(root / "run"),
        "--set", "data.synthetic_per_class=25", "--set", "schedule.steps=90", "--set", "schedule.finetune_lr=1e-4"])
    assert result.exit_code == 0, result.output
    return root


def test_the_recipe_learns_entities(run):
    metrics = json.loads((run / "run" / "metrics.json").read_text())
    assert metrics["task"] == "tokens" and sorted(metrics["per_entity"]) == ["AMOUNT", "COURT", "DATE", "PARTY"]
    assert metrics["num_examples"] == 300 and metrics["cut_words"] == 0
    # 100 training sentences, 90 steps (entity F1 0.83 on this machine): below the full recipe, far above chance.
    assert metrics["entity_f1"] > 0.6 and metrics["accuracy"] > 0.9, metrics["entity_f1"]
    conll = next((run / "cache").glob("contract_entities_25_seed0")) / "contracts_test.conll"
    result = CliRunner().invoke(main, ["evaluate", str(run / "run"), "--data", str(conll)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((run / "run" / "evaluations" / "contracts_test" / "metrics.json").read_text())
    assert evaluated["entity_f1"] == pytest.approx(metrics["entity_f1"])


def test_exported_spans_on_raw_text_are_the_models(run):
    import keras
    import tensorflow as tf

    from tfft.export import run_backbone
    from tfft.modalities.text.alignment import WordAligner
    from tfft.modalities.text.entities import spans
    from tfft.recipe import recipe_from_run
    from tfft.trainer import Trainer

    result = CliRunner().invoke(main, ["export", str(run / "run")])
    assert result.exit_code == 0, result.output
    served = subprocess.run([sys.executable, "-c", SERVE, str(run / "run" / "export" / "saved_model")],
                            input=json.dumps(RAW), capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert served.returncode == 0, served.stderr[-2000:]
    out = json.loads(served.stdout.strip().splitlines()[-1])
    assert out["imported"] == []

    # The model's own tags, read as entities in Python on the words the aligner finds.
    model_path = str(run / "run" / "model.keras")
    trainer = Trainer(recipe_from_run(str(run / "run")), out_dir=str(run / "run"), verbose=0, dry_run=True)
    aligner = WordAligner(run_backbone(trainer, model_path).preprocess)
    words = aligner(tf.constant(RAW))
    logits = keras.models.load_model(model_path).predict(words["inputs"], verbose=0)
    tags = (run / "run" / "export" / "saved_model" / "labels.txt").read_text().split()
    for row, text in enumerate(RAW):
        start, end, position = (words[k][row].numpy() for k in ("start", "end", "position"))
        kept = start >= 0
        guessed = [tags[i] for i in logits[row][position[kept]].argmax(-1)]
        expected = [(int(start[a]), int(end[b - 1]), kind, text[start[a]:end[b - 1]]) for kind, a, b in spans(guessed)]
        assert [tuple(e[:4]) for e in out["rows"][row]] == expected
        for s, e, _, entity, score in out["rows"][row]:
            assert text[s:e] == entity and 0.0 < score <= 1.0
    found = {(kind, text) for row in out["rows"] for _, _, kind, text, _ in row}
    assert len(found) >= 3, found  # a briefly trained model still finds some of these
