"""Import of the released CLIBD checkpoints (``best.pth``) into a model directory.

The file is a plain ``torch.save(model.state_dict())`` of the official ``SimpleCLIP`` (478 tensors for
image+DNA+text, listed in ../shared/design/clibd_official_state_dict_keys.json); image+DNA and
image+text releases hold only their towers. Import is strict: every tensor must be expected and every
expected tensor present, with the same shape, or the file is refused with the list of offenders.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clibd_core.config import preset_config
from clibd_core.fileio import file_sha256
from clibd_core.models.clibd import CLIBDModel

TOWER_PREFIXES = {
    "image": "image_encoder.",
    "dna": "dna_encoder.",
    "text": "language_encoder.",
}
# Buffers that older transformers versions saved with the weights; they hold no learned values.
_IGNORABLE_SUFFIXES = (".position_ids",)
_LISTED = 20


class CheckpointError(ValueError):
    """A checkpoint that does not match the official CLIBD layout, with the offending tensors named."""


def read_official_state_dict(best_pth: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a released ``best.pth`` (``weights_only`` load, ``module.`` prefixes stripped)."""
    try:
        state = torch.load(str(best_pth), map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with code in it, a truncated file, not a torch file at all
        raise CheckpointError(f"'{best_pth}' is not a loadable weights-only PyTorch checkpoint: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"'{best_pth}' does not hold a plain state dict of tensors")
    return {
        name.removeprefix("module."): tensor for name, tensor in state.items() if not name.endswith(_IGNORABLE_SUFFIXES)
    }


def _listing(title: str, names: list[str]) -> str:
    shown = "\n  ".join(names[:_LISTED])
    more = f"\n  ... and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f"{title} ({len(names)}):\n  {shown}{more}"


def import_official_checkpoint(best_pth: str | Path, out_dir: str | Path) -> Path:
    """Check ``best_pth`` against the official layout and write it as a ``paper`` model directory."""
    state = read_official_state_dict(best_pth)
    modalities = [m for m, prefix in TOWER_PREFIXES.items() if any(k.startswith(prefix) for k in state)]
    if len(modalities) < 2:
        raise CheckpointError(
            f"'{best_pth}' holds tensors of {modalities or 'no'} CLIBD tower(s); a CLIBD checkpoint has at least two"
        )
    model = CLIBDModel(preset_config("paper", modalities))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{name}: file {tuple(state[name].shape)}, expected {tuple(expected[name].shape)}"
        for name in set(state) & set(expected)
        if state[name].shape != expected[name].shape
    )
    problems = [
        _listing(title, names)
        for title, names in (
            ("missing tensors", missing),
            ("unexpected tensors", unexpected),
            ("wrong shapes", wrong_shape),
        )
        if names
    ]
    if problems:
        raise CheckpointError(f"'{best_pth}' is not a CLIBD checkpoint of the released layout:\n" + "\n".join(problems))
    model.load_state_dict(state, strict=True)
    provenance = {
        "source": "official CLIBD checkpoint",
        "source_file": str(Path(best_pth).resolve()),
        "source_sha256": file_sha256(best_pth),
    }
    return model.save(out_dir, provenance=provenance)
