"""CLIBD: images, DNA barcodes and taxonomy in one embedding space.

The public entry points are imported lazily so that ``import clibd_core`` (and ``clibd --help``)
stays fast and does not pull in torch.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "clibd_core.models.clibd",
    "build_model": "clibd_core.models.clibd",
    "CLIBDModel": "clibd_core.models.clibd",
    "import_official_checkpoint": "clibd_core.models.official",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clibd_core' has no attribute '{name}'")
