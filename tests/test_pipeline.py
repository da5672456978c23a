from __future__ import annotations

import numpy as np
import torch

from sae.metrics import psnr
from sae.pipeline import decode_many, encode_face, quality_curve, sparsify_each


def test_sparsify_each_matches_model_sparsify(tiny_model):
    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    ks = [1, 2, 7, 16, 32]
    sparse = sparsify_each(tiny_model, face.codes, ks)
    for row, k in enumerate(ks):
        assert torch.equal(sparse[row : row + 1], tiny_model.sparsify(face.codes, k))


def test_quality_curve_is_one_batched_decode(tiny_model, monkeypatch):
    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    calls = []
    original = tiny_model.decode
    monkeypatch.setattr(tiny_model, "decode", lambda codes: calls.append(codes.shape[0]) or original(codes))
    curve = quality_curve(tiny_model, face)
    assert calls == [tiny_model.k_max]
    assert curve.ks.tolist() == list(range(1, tiny_model.k_max + 1))
    expected = psnr(face.image, decode_many(tiny_model, tiny_model.sparsify(face.codes, 5)))
    assert np.isclose(curve.psnr[4], expected[0])
