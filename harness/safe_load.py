"""The one way the harness reads a torch file: ``torch.load(weights_only=True)``, with errors a user can act on.

When ``weights_only=True`` refuses a file, torch's own message advises retrying with
``weights_only=False``, which runs whatever code the file's pickle names. That advice must never
reach a user, so every refusal is rewritten here: a plain Python pickle (not written by
``torch.save``) is called one, and a torch file holding other objects says what it may hold instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import CheckpointError

#: first bytes of a ``torch.save`` zip file (torch >= 1.6)
_ZIP_MAGIC = b"PK\x03\x04"
#: first bytes of a legacy (pre-zip) ``torch.save`` file: the pickled magic number 0x1950a86a20f9469cfc6c
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_PICKLE_PROTO = b"\x80"


def file_kind(path: Path) -> str:
    """``torch`` (zip or legacy torch.save), ``pickle`` (a plain Python pickle) or ``other``, from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_TORCH_MAGIC))
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch"
    return "pickle" if head.startswith(_PICKLE_PROTO) else "other"


def refusal(path: Path, what: str, kind: str, err: BaseException | None = None) -> str:
    """Why ``path`` (of :func:`file_kind` ``kind``) cannot be loaded safely, in words a user can act on."""
    if kind == "pickle":
        return (f"{what} {path} is a plain Python pickle, not a PyTorch weights file that can be loaded safely: "
                "unpickling it could run any code it names, so the harness does not. Save the tensors with "
                "torch.save(model.state_dict(), PATH) or as .safetensors and pass that file")
    if kind == "other":
        return f"{what} {path} is not a PyTorch weights file (torch.save) that can be loaded safely"
    detail = _torch_detail(err) if err is not None else ""
    return (f"{what} {path} is a PyTorch file that cannot be loaded safely: it holds more than tensors, numbers, "
            f"strings and plain containers, or is damaged{f' ({detail})' if detail else ''}. Save the state dict "
            "alone (torch.save(model.state_dict(), PATH)) and pass that file")


def _torch_detail(err: BaseException) -> str:
    """The part of torch's message that names the offending object, without its advice to unpickle anyway."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line.split(" Please ", 1)[0] for line in lines if "weights_only" not in line and "arbitrary code" not in line]
    return kept[0][:200] if kept else ""


def load_weights_only(path: str | Path, what: str, map_location: Any = "cpu", allowed: Iterable[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)``, ``allowed`` classes added to torch's safe list; a file it
    refuses raises :class:`CheckpointError` naming ``what`` (e.g. ``--checkpoint``) and the file."""
    path = Path(path)
    try:
        kind = file_kind(path)
    except OSError as err:
        raise CheckpointError(f"{what} {path}: cannot read it ({err.strerror or err})") from None
    if kind != "torch":  # never handed to an unpickler, not even torch's restricted one
        raise CheckpointError(refusal(path, what, kind))
    import torch  # here, so that sniffing a file (runs.inputs) costs no torch import

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for damaged or disallowed content; all are the file's
        raise CheckpointError(refusal(path, what, kind, err)) from None
