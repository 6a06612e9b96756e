"""Brain-tumour MRI classification with ResNet50 from ImageNet weights.

Four classes: glioma, meningioma, pituitary tumour, no tumour. Point it at your scans, one
sub-folder per class:

    tfft run recipes/tumor_resnet.py --set data.path=~/mri
    tfft plan recipes/tumor_resnet.py

Without a data path it trains on tfft's built-in synthetic MRI-like slices, so it runs on
any machine; `--demo` also shrinks images and epochs to finish in minutes on a laptop CPU.
"""

backbone = dict(
    name="ResNet50",
    weights="imagenet",
    input_size=224,
)

data = dict(
    kind="image",
    path=None,                      # --set data.path=DIR: a class-per-folder tree
    synthetic="mri",                # used only while data.path is None
    validation_split=0.2,
    batch_size=32,
    # MRI slices have no canonical left/right: flips and small rotations are safe; strong
    # zoom would cut lesions at the border.
    augment=dict(flip=True, rotation=0.05, zoom=0.05, contrast=0.1),
    class_weights="balanced",
)

head = dict(pooling="avg", dropout=0.3)

# tfft's recommendation (docs/schedules.md#recommendations): the head first, then the head
# and the top two groups at a rate the learning-rate finder picks on the training data.
schedule = dict(
    kind="two_phase",
    head_epochs=3,
    lr=1e-3,
    epochs=12,
    unfreeze=2,
    finetune_lr="find",
    shape="warmup_cosine",
    warmup=0.1,
    early_stopping=4,
)

train = dict(optimizer="adamw", weight_decay=1e-4, monitor="val_loss")

runtime = dict(strategy="auto", mixed_precision="auto")

# `--demo`: 64 px images and a short schedule that trains every group, so that the run also
# learns when ImageNet weights cannot be had offline and the backbone starts from random
# initialisation (BatchNorm then trains too, and its statistics are recomputed at the end).
demo = {
    "backbone.input_size": 64,
    "data.synthetic_per_class": 150,
    "schedule.head_epochs": 1,
    "schedule.epochs": 14,
    "schedule.unfreeze": 0,
    "schedule.finetune_lr": 1e-3,
    "schedule.early_stopping": 0,
}
