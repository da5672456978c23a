"""A model's identity: the SHA-256 of its weights, so shares and shipped attack files can name the model they fit.

Computed from the tensors themselves (names, dtypes, shapes, bytes in name order), not from a file, so a model gets
the same digest whether it came from the bundled folder, the Hub cache or memory. Hashed once per model object.
"""

from __future__ import annotations

import hashlib
import weakref

import torch
from torch import nn

_DIGESTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def _version(model: nn.Module) -> tuple:
    """Changes whenever any parameter or buffer is modified in place (PyTorch bumps a tensor's version) or replaced by
    another tensor (`load_state_dict(..., assign=True)`: other storage, and a version count that may sum the same)."""
    return tuple((tensor.data_ptr(), tensor._version) for tensor in model.state_dict().values())


def _hash_tensor(digest, tensor: torch.Tensor) -> None:
    """Feed one tensor to `digest`: its dtype, shape and bytes."""
    data = tensor.detach().cpu().contiguous()
    digest.update(f"{data.dtype}|{tuple(data.shape)}|".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Hex SHA-256 of tensors' dtypes, shapes and bytes, in order: which faces (or labels, or codes) a result was
    computed on, so that results measured on other data are never taken for it."""
    digest = hashlib.sha256(b"sae/tensors/v1")
    for tensor in tensors:
        _hash_tensor(digest, tensor)
    return digest.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """Hex SHA-256 of the model's weights (cached until a weight changes)."""
    version = _version(model)
    cached = _DIGESTS.get(model)
    if cached is not None and cached[0] == version:
        return cached[1]
    digest = hashlib.sha256(b"sae/weights/v1")
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|".encode())
        _hash_tensor(digest, tensor)
    _DIGESTS[model] = (version, digest.hexdigest())
    return _DIGESTS[model][1]


def model_id(model: nn.Module) -> bytes:
    """The 8 bytes a version 2 public code stores to name the model that made it."""
    return bytes.fromhex(weights_digest(model))[:8]
