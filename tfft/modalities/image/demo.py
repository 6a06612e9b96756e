"""A procedural brain-MRI-like image set for demos and tests that must run offline.

Each image is an axial slice: a noisy elliptical head with a bright skull ring, dark
ventricles and smooth tissue texture, posed with random size, rotation, position and
intensity. The four classes differ only in the lesion, so a model has to look at shape,
size and position rather than at any single pixel:

- `glioma`: a large, irregular, diffuse mass inside one hemisphere;
- `meningioma`: a round, sharply bounded bright mass resting against the skull;
- `pituitary`: a small bright round lesion on the midline near the skull base (bottom);
- `no_tumor`: no lesion.

The images are drawn with numpy and written as grayscale PNGs in a class-per-folder tree
that `tfft.data.image_datasets` reads directly.
"""

import os

import numpy as np
import tensorflow as tf

from tfft.data import generated
from tfft.data.checks import check_int

SYNTHETIC_MRI_CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")

# Bump when the drawing changes, so sets made by an older version are regenerated.
_VERSION = 1


def _smooth_noise(rng, size, cells):
    """Zero-mean, unit-scale noise that varies over about `size / cells` pixels."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    x = np.linspace(0.0, cells, size)
    i0 = np.minimum(x.astype(int), cells - 1)
    f = x - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _draw_slice(rng, label, size):
    """Draw one slice of class `label` as a float image in [0, 1]."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    px = 2.0 / size  # one pixel in these coordinates; edge widths scale with it

    # Head pose: the lesion geometry below lives in the head's frame (u right, v down),
    # so it moves and turns with the head.
    cx, cy = rng.uniform(-0.08, 0.08, size=2)
    theta = rng.uniform(-0.35, 0.35)
    a = rng.uniform(0.6, 0.74)
    b = a * rng.uniform(1.1, 1.25)
    cos, sin = np.cos(theta), np.sin(theta)
    u = cos * (xx - cx) + sin * (yy - cy)
    v = -sin * (xx - cx) + cos * (yy - cy)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)

    skull = rng.uniform(0.07, 0.1)
    inner = 1.0 - skull
    head = _sigmoid((1.0 - r) / (1.5 * px / a))
    brain = _sigmoid((inner - r) / (1.5 * px / a))
    ring = np.exp(-(((r - (1.0 - skull / 2)) / (skull / 2.2)) ** 2)) * head

    texture = _smooth_noise(rng, size, 8)
    detail = _smooth_noise(rng, size, 24)
    image = 0.08 * head + 0.72 * ring
    image += brain * (0.42 + 0.05 * texture + 0.03 * detail)

    # Two lateral ventricles: dark, slightly splayed ellipses either side of the midline.
    vent_len = b * rng.uniform(0.2, 0.28)
    vent_wid = a * rng.uniform(0.05, 0.08)
    vent_v = b * rng.uniform(-0.12, 0.02)
    for side in (-1.0, 1.0):
        tilt = -side * rng.uniform(0.15, 0.35)
        du = u - side * a * rng.uniform(0.1, 0.15)
        dv = v - vent_v
        pu = np.cos(tilt) * du + np.sin(tilt) * dv
        pv = -np.sin(tilt) * du + np.cos(tilt) * dv
        vr = np.sqrt((pu / vent_wid) ** 2 + (pv / vent_len) ** 2)
        image -= 0.27 * brain * _sigmoid((1.0 - vr) / 0.15)

    if label == "glioma":
        side = rng.choice((-1.0, 1.0))
        gu = side * a * rng.uniform(0.3, 0.45)
        gv = b * rng.uniform(-0.45, 0.3)
        radius = a * rng.uniform(0.22, 0.32)
        du, dv = u - gu, v - gv
        angle = np.arctan2(dv, du)
        # Random low harmonics make the outline irregular, a wide edge makes it diffuse.
        bumps = np.zeros_like(angle)
        for k in range(2, 6):
            bumps += rng.uniform(0.0, 0.14) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
        dist = np.sqrt(du**2 + dv**2) / (radius * (1.0 + bumps))
        core = _sigmoid((1.0 - dist) / 0.12)
        edema = _sigmoid((1.45 - dist) / 0.2)
        mottled = 0.7 + 0.3 * _smooth_noise(rng, size, 16)
        necrosis = _sigmoid((rng.uniform(0.25, 0.45) - dist) / 0.08)
        image += brain * (0.1 * edema + 0.25 * core * mottled - 0.2 * necrosis)
    elif label == "meningioma":
        # Anywhere along the skull except the bottom centre, where pituitary lesions sit.
        psi = rng.uniform(-np.pi * 0.85, np.pi * 0.35)
        radius = a * rng.uniform(0.13, 0.2)
        edge_u = inner * a * np.cos(psi)
        edge_v = inner * b * np.sin(psi)
        norm = np.hypot(edge_u, edge_v)
        mu = edge_u - radius * edge_u / norm
        mv = edge_v - radius * edge_v / norm
        dist = np.sqrt((u - mu) ** 2 + (v - mv) ** 2)
        mass = _sigmoid((radius - dist) / (1.2 * px))
        image += head * mass * (rng.uniform(0.35, 0.45) - 0.3 * ring)
    elif label == "pituitary":
        radius = a * rng.uniform(0.07, 0.1)
        pu = a * rng.normal(0.0, 0.03)
        pv = inner * b - radius - b * rng.uniform(0.08, 0.16)
        dist = np.sqrt((u - pu) ** 2 + (v - pv) ** 2)
        image += brain * rng.uniform(0.4, 0.5) * _sigmoid((radius - dist) / (1.2 * px))

    image *= rng.uniform(0.75, 1.2)
    image += rng.uniform(0.02, 0.05) * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0)


def make_synthetic_mri(directory, per_class=120, image_size=128, seed=0):
    """Write a synthetic four-class brain-MRI-like image set and return its folder.

    The set is written to a hidden temporary folder beside `directory` and renamed into
    place, so an interrupted run never leaves a partial set. A `.complete` marker records
    the parameters: calling again with the same ones returns at once without rewriting,
    and other parameters replace a set this function made earlier. The same seed always
    gives the same images.

    Args:
        directory: folder to create; it gets one sub-folder per class in
            `SYNTHETIC_MRI_CLASSES`, each with `per_class` PNG files.
        per_class: images per class.
        image_size: side of the square images in pixels, at least 32.
        seed: integer seed.

    Returns:
        `directory`, as a string.

    Raises:
        DataError: for bad arguments, or when `directory` is a file or a non-empty folder
            that this function did not create (it is never overwritten).

    Example:
        >>> folder = make_synthetic_mri("/tmp/mri", per_class=50, image_size=64)
        >>> sorted(os.listdir(folder))
        ['glioma', 'meningioma', 'no_tumor', 'pituitary']
    """
    per_class = check_int("per_class", per_class, 1)
    image_size = check_int("image_size", image_size, 32)
    seed = check_int("seed", seed, 0)
    directory = os.fspath(directory)
    params = dict(
        classes=list(SYNTHETIC_MRI_CLASSES),
        per_class=per_class,
        image_size=image_size,
        seed=seed,
        version=_VERSION,
    )
    if generated.is_current(directory, params):
        return directory
    generated.check_folder(directory, "the synthetic data", "a synthetic set")

    def write(staging):
        for class_index, label in enumerate(SYNTHETIC_MRI_CLASSES):
            os.makedirs(os.path.join(staging, label))
            for i in range(per_class):
                # One generator per image keeps each image independent of per_class.
                rng = np.random.default_rng([seed, class_index, i])
                pixels = np.round(_draw_slice(rng, label, image_size) * 255.0)
                png = tf.io.encode_png(pixels.astype(np.uint8)[:, :, None]).numpy()
                with open(os.path.join(staging, label, f"{label}_{i:04d}.png"), "wb") as f:
                    f.write(png)

    generated.write_folder(directory, params, write)
    return directory
