"""Images: class folders, CSV manifests and TFDS; Keras applications, `.keras` files and
tfft's `image_cnn`; misclassified examples shown as pictures."""

import os

import numpy as np

from tfft.errors import BackboneError
from tfft.modalities import Modality
from tfft.modalities.image.keys import DEFAULT_AUGMENT, IMAGE_EXTENSIONS, STRONG_AUGMENT


# `backbone.input_size` when a recipe leaves it unset (`tfft.recipe.BackboneConfig`).
DEFAULT_INPUT_SIZE = 224


class ImageModality(Modality):
    name = "image"
    synthetic = "mri"
    augment = DEFAULT_AUGMENT
    strong_augment = STRONG_AUGMENT
    takes_applications = True
    file_argument = "image_bytes"
    extensions = IMAGE_EXTENSIONS
    tfds_feature = "Image"
    per_class = 150

    def backbone_options(self, recipe):
        return dict(image_size=recipe.data.image_size)

    def build_backbone(self, name, weights="pretrained", input_size=224, family=None, load_weights=True,
                       image_size=None):
        from tfft.backbones import application_backbone, no_weights

        if name == "image_cnn":
            from tfft.modalities.image.cnn import build_image_cnn

            no_weights(name, weights)
            return build_image_cnn(input_size)
        return application_backbone(name, weights, input_size, load_weights, family=family)

    def file_backbone(self, backbone, input_size=None, image_size=None):
        """A `.keras` model with a fixed input size sets the images' size; a recipe that
        asks for another one is an error naming its key."""
        fixed = backbone.image_size
        if fixed is None:
            return backbone
        for key, value in (("data.image_size", image_size), ("backbone.input_size", input_size)):
            if key == "backbone.input_size" and value == DEFAULT_INPUT_SIZE:
                continue  # the default: the file's own size applies
            if value is not None and tuple(value if isinstance(value, (tuple, list)) else (value, value)) != fixed:
                raise BackboneError(
                    f"{backbone.name} takes {fixed[0]} x {fixed[1]} images, but {key}={value!r}: leave it unset "
                    f"(a .keras backbone brings its input size) or set it to {fixed[0]}.")
        return backbone

    def datasets(self, config, backbone, input_size, dry_run=False, sources=None, statistics=None):
        from tfft.data.build import expand
        from tfft.modalities.image.pipeline import image_datasets

        return image_datasets(
            path=expand(sources["path"]),
            manifest=expand(sources["manifest"]),
            validation_path=expand(sources["validation_path"]),
            validation_split=config.validation_split,
            image_size=config.image_size or backbone.image_size or input_size,
            batch_size=config.batch_size,
            seed=config.seed,
            augment=self.resolve_augment(config.augment),
            preprocess=backbone.preprocess,
            cache=expand(config.cache),
            class_weights=config.class_weights,
            verify=config.verify and not dry_run,
            holdout=config.holdout,
            on_error=config.on_error if not dry_run else "raise",
        )

    def demo_set(self, config, input_size, verbose=0):
        from tfft.data.build import cache_dir, say_demo
        from tfft.modalities.image.demo import make_synthetic_mri

        per_class = config.synthetic_per_class or self.per_class
        size = max(64, config.image_size or input_size)
        directory = os.path.join(cache_dir(), f"synthetic_mri_{size}px_{per_class}_seed{config.seed}")
        say_demo(verbose, self.synthetic, directory)
        return dict(path=make_synthetic_mri(directory, per_class=per_class, image_size=size, seed=config.seed))

    def tfds_file(self, value, feature, stem):
        from tfft.data.tfds_files import write_image

        return write_image(value, feature, stem)

    def unreadable(self, files):
        from tfft.modalities.image.pipeline import find_undecodable

        return list(find_undecodable(files))

    def log_misclassified(self, logger, tag, raw, labels, total, config):
        from tfft.callbacks.examples import misclassified_table

        images = np.stack([np.asarray(x, "float32") for x in raw]) / 255.0
        logger.log_examples(tag, images=np.clip(images, 0, 1), text=misclassified_table(labels, total))

    def serving(self, recipe, backbone, metadata):
        """Encoded image bytes (JPEG, PNG, BMP, GIF's first frame) for the SavedModel; RGB
        pixels in 0-255 at the training size for TFLite. Both are decoded, resized and
        preprocessed exactly as the validation pipeline does."""
        import tensorflow as tf

        from tfft.export import Serving
        from tfft.modalities.image.pipeline import decode_and_resize

        size = _size(recipe.data.image_size or backbone.image_size or recipe.backbone.input_size)
        preprocess = backbone.preprocess or (lambda x: x)

        def from_bytes(image_bytes):
            images = tf.map_fn(lambda b: decode_and_resize(b, size), image_bytes,
                               fn_output_signature=tf.TensorSpec(size + (3,), tf.float32))
            return preprocess(images)

        return Serving(
            signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
            features=from_bytes,
            lite_signature=[tf.TensorSpec([None, size[0], size[1], 3], tf.float32, name="pixels")],
            lite_features=preprocess,
        )

    def tune_candidates(self, base):
        return augment_candidates(base)


def augment_candidates(base):
    """The augmentation candidates of `schedule.kind="auto"` for images and audio."""
    return [
        ("strong_augment", dict(base, **{"data.augment": "strong"}),
         "stronger augmentation, for few examples seen many times"),
        ("no_augment", dict(base, **{"data.augment": {}}),
         "no augmentation, when the training examples already look like the rest"),
    ]


def _size(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))
