from __future__ import annotations

import numpy as np
import torch

from sae.app.pipeline import decode_many, encode_face, quality_curve, sparsify_each
from sae.core.metrics import psnr


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


def test_privacy_panels_one_batched_decode(tiny_model, monkeypatch):
    from sae.app.pipeline import ShareSettings, privacy_panels

    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    calls = []
    original = tiny_model.decode
    monkeypatch.setattr(tiny_model, "decode", lambda codes: calls.append(codes.shape[0]) or original(codes))
    panels = privacy_panels(tiny_model, face, ShareSettings(k=4, extra_attack="magnitude"))
    assert calls == [4] and [p.name for p in panels][:3] == ["key holder", "no key (decoys)", "permutation attack"]
    assert all(p.image.shape == (3, 64, 64) and np.isfinite(p.ssim) for p in panels)


def test_key_holder_matches_plain_reconstruction_without_privacy(tiny_model):
    from sae.app.pipeline import ShareSettings, privacy_panels

    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    settings = ShareSettings(k=4, decoys=False, permute=False, value_bits=32, extra_attack="none")
    holder = privacy_panels(tiny_model, face, settings)[0]
    plain = decode_many(tiny_model, tiny_model.sparsify(face.codes, 4))[0]
    assert torch.allclose(holder.image, plain, atol=1e-6)


def test_k_prime_follows_the_settings():
    from sae.app.pipeline import ShareSettings

    assert ShareSettings(k=8, k_prime_ratio=None).k_prime(32) == 32
    assert ShareSettings(k=8, k_prime_ratio=2.0).k_prime(32) == 16
    assert ShareSettings(k=8, k_prime_ratio=8.0).k_prime(32) == 32
    assert ShareSettings(k=8, decoys=False).k_prime(32) == 8


def test_re_encode_attack_panel(tiny_model):
    from sae.app.pipeline import ShareSettings, privacy_panels

    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    assert privacy_panels(tiny_model, face, ShareSettings(k=4, extra_attack="re-encode"))[-1].name == "re-encode attack"


def test_privacy_panels_regression_makes_its_image_without_a_decode(tiny_model, monkeypatch):
    """The regression attack's panel comes from its own linear map: the decode stays at the three code panels."""
    import pytest

    from sae.app.pipeline import ShareSettings, privacy_panels
    from sae.privacy import scheme as privacy
    from sae.privacy.attacks import fit_regression_attack
    from sae.zoo.shipped import BundledRegression

    k, scheme = 4, dict(permute=True, signs="balanced", value_bits=8)
    with torch.inference_mode():
        codes = tiny_model.sparsify(tiny_model.encode(torch.rand(12, 3, 64, 64)), k)
    dual = fit_regression_attack(codes, torch.rand(12, 3, 64, 64), tiny_model.code_dim, torch.Generator().manual_seed(0), k=k, **scheme)
    regression = BundledRegression(dual.compact(8), k, tiny_model.code_dim, True, "balanced", 8, {})
    face = encode_face(tiny_model, torch.rand(1, 3, 64, 64))
    calls = []
    original = tiny_model.decode
    monkeypatch.setattr(tiny_model, "decode", lambda codes: calls.append(codes.shape[0]) or original(codes))
    settings = ShareSettings(k=k, k_prime_ratio=None, extra_attack="regression")
    assert settings.k_prime(tiny_model.code_dim) == tiny_model.code_dim and settings.permute == privacy.DEFAULT_PERMUTE
    panels = privacy_panels(tiny_model, face, settings, regression=regression)
    assert calls == [3] and [p.name for p in panels] == ["key holder", "no key (decoys)", "permutation attack", "regression attack"]
    last = panels[-1]
    assert last.image.shape == (3, 64, 64) and np.isfinite(last.psnr) and np.isfinite(last.ssim)
    assert np.isclose(last.psnr, psnr(face.image, last.image[None])[0])
    with pytest.raises(ValueError, match="fitted for k = 4"):
        privacy_panels(tiny_model, face, ShareSettings(k=5, k_prime_ratio=None, extra_attack="regression"), regression=regression)
    with pytest.raises(ValueError, match="needs its fitted form"):
        privacy_panels(tiny_model, face, settings)
