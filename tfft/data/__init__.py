"""tf.data pipelines: listing, splitting and loading labelled examples."""

from tfft.data.datasets import Datasets
from tfft.data.image import IMAGE_EXTENSIONS, image_datasets
from tfft.data.sources import class_weights, list_class_folders, read_manifest, stratified_split
from tfft.data.synthetic import SYNTHETIC_MRI_CLASSES, make_synthetic_mri

__all__ = [
    "Datasets",
    "IMAGE_EXTENSIONS",
    "SYNTHETIC_MRI_CLASSES",
    "class_weights",
    "image_datasets",
    "list_class_folders",
    "make_synthetic_mri",
    "read_manifest",
    "stratified_split",
]
