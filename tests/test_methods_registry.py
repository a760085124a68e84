"""Every registered method, run on a tiny random clip: declared stride and dim hold, features are unit-norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness import registry

FAMILY_EXAMPLES = ["timm:resnet18@crw", "timm:vit_tiny_patch16_224"]
OFFLINE = {"timm:": {"pretrained": False}}


def method_names() -> list[str]:
    return registry.list_methods() + FAMILY_EXAMPLES


@pytest.mark.registry
@pytest.mark.parametrize("name", method_names())
def test_features_match_declared_stride_and_dim(name):
    entry = registry.get_method(name)
    config = next((c for prefix, c in OFFLINE.items() if name.startswith(prefix)), {})
    method = entry.factory({**config, "device": "cpu"}).to(torch.device("cpu"))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 70, 90, 3), dtype=np.uint8)
    feats = method.features(frames)
    stride = method.stride
    if entry.stride is not None:
        assert (entry.stride, entry.dim) == (method.stride, method.dim)
    assert feats.shape == (3, method.dim, math.ceil(70 / stride), math.ceil(90 / stride))
    assert feats.dtype == torch.float32
    norms = feats.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    info = method.describe()
    assert {"backbone", "parameters", "pretraining", "checkpoint"} <= set(info)
