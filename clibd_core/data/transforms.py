"""Opening user images safely and the eval/train transforms of each preset (CLIBD_SPEC.md, image tower)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

ImageInput = str | Path | bytes | np.ndarray | Image.Image

# Pillow refuses images above ~179 Mpx as a decompression bomb; camera frames are far below that.
_DECODE_HINT = 512  # decode big JPEGs at reduced scale (still ≥ 512 px), far faster than full size
MAX_PIXELS = 100_000_000  # larger images are refused by their declared size, before decoding (bombs)


class ImageError(ValueError):
    """An image that cannot be read, with a message naming it."""


def open_image(image: ImageInput, name: str | None = None) -> Image.Image:
    """An RGB PIL image from a path, bytes, an array or a PIL image; clear errors for corrupt files.

    Grayscale, palette, RGBA and 16-bit (TIFF) images are converted; large JPEGs are decoded at a
    reduced scale that is still larger than any transform needs.
    """
    label = name or (str(image) if isinstance(image, (str, Path)) else type(image).__name__)
    try:
        if isinstance(image, Image.Image):
            picture = image
        elif isinstance(image, np.ndarray):
            picture = Image.fromarray(image)
        else:
            source = io.BytesIO(image) if isinstance(image, bytes) else image
            picture = Image.open(source)  # reads the header only: the declared size is checked first
            if picture.width * picture.height > MAX_PIXELS:
                raise ImageError(
                    f"image '{label}': too large ({picture.width} × {picture.height} pixels, more than "
                    f"{MAX_PIXELS / 1e6:.0f} million): resize it first"
                )
            if picture.format == "JPEG":
                picture.draft("RGB", (_DECODE_HINT, _DECODE_HINT))
            picture.load()
        if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(picture, dtype=np.float32)
            picture = Image.fromarray((255 * array / max(float(array.max()), 1.0)).astype(np.uint8))
        return picture.convert("RGB")
    except FileNotFoundError as error:
        raise ImageError(f"image '{label}': file not found") from error
    except Image.DecompressionBombError as error:
        raise ImageError(f"image '{label}': too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as error:
        raise ImageError(f"image '{label}': not a readable image ({error})") from error


def eval_transform(spec: dict) -> T.Compose:
    """A preset's ``image_transform``: shorter side to ``resize``, centre ``crop``, [0, 1] tensors, then
    ``mean``/``std`` normalisation if given (``paper``: none, as CLIBD trained; ``lite``: EfficientNet-Lite0's
    0.5/0.5)."""
    interpolation = T.InterpolationMode(spec["interpolation"])
    steps = [T.Resize(spec["resize"], interpolation=interpolation), T.CenterCrop(spec["crop"]), T.ToTensor()]
    if spec.get("mean") is not None:
        steps.append(T.Normalize(tuple(spec["mean"]), tuple(spec["std"])))
    return T.Compose(steps)


def train_transform(spec: dict, augment: str = "clibd") -> T.Compose:
    """``clibd``: the paper's augmentation (resize 256, random-resized crop 224, both flips, ±45°
    rotation), for top-down specimen images; ``photos``: what lab photos need (random-resized crops of
    35-100 %, horizontal flip, ±15° rotation, colour jitter for lighting and camera). Crops are of the
    preset's size (``spec``'s ``resize`` and ``crop``), then its tensor conversion."""
    steps = {
        "clibd": [
            T.Resize(spec["resize"]),
            T.RandomResizedCrop(spec["crop"]),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            T.RandomRotation(45),
        ],
        "photos": [
            T.RandomResizedCrop(spec["crop"], scale=(0.35, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.RandomRotation(15),
            T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        ],
    }[augment]
    return T.Compose(steps + eval_transform(spec).transforms[2:])


def random_barcode_window(sequence: str, probability: float = 0.5, min_fraction: float = 0.6) -> str:
    """Training augmentation for barcodes: with ``probability``, keep a random window covering at least
    ``min_fraction`` of the read, as partial reads do. Draws from torch's global RNG (restored on resume).

    Without it a small DNA tower learns read coverage as a feature, and a partial query then matches
    partial keys of other species rather than full keys of its own.
    """
    if torch.rand(()) >= probability:
        return sequence
    length = int(len(sequence) * (min_fraction + (1 - min_fraction) * torch.rand(()).item()))
    start = int(torch.randint(0, len(sequence) - length + 1, ()).item())
    return sequence[start : start + length]
