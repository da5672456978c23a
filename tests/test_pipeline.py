"""The app's pipeline (sae.app.pipeline): encode once, the quality curve in one decode, every panel of a control change
from one share in one decode, and the linkage counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sae.app import pipeline
from sae.app.face_cache import FaceRef, FaceStore
from sae.app.handlers import EXAMPLES
from sae.app.models import load_served, serve
from sae.app.pipeline import (
    EncodedFace,
    curve_ks,
    encode_face,
    panel_titles,
    privacy_view,
    quality_curve,
    sparsify_each,
)
from sae.app.settings import NO_EXTRA, ShareSettings
from sae.app.uploads import Uploads
from sae.core.metrics import psnr, ssim
from sae.privacy.catalogue import ATTACKS, EXTRA_ATTACKS
from sae.privacy.scheme import restrict, reveal
from sae.zoo import files
from sae.zoo.hub import load_model
from tests.conftest import SHIPPED_K, SHIPPED_K_PRIME


def _face(model, seed: int = 0) -> EncodedFace:
    generator = torch.Generator().manual_seed(seed)
    return encode_face(model, (torch.rand(3, model.image_size, model.image_size, generator=generator) * 255).byte())


@pytest.fixture
def served(served_models):
    return served_models[0]


def _count_decodes(model, monkeypatch) -> list[int]:
    calls, original = [], model.decode
    monkeypatch.setattr(model, "decode", lambda codes: calls.append(codes.shape[0]) or original(codes))
    return calls


def test_encode_face_encodes_the_face_and_its_mirror_in_one_call(tiny_model, monkeypatch):
    pixels = (torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).byte()
    calls, original = [], tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda x: calls.append(x.shape[0]) or original(x))
    face = encode_face(tiny_model, pixels)
    assert calls == [2] and face.image.shape == (1, 3, 64, 64) and face.codes.shape == face.mirror_codes.shape == (1, 4, 32)
    assert torch.equal(face.image, pixels[None].float() / 255)
    with torch.inference_mode():
        assert torch.allclose(face.mirror_codes, original(face.image.flip(-1)), atol=1e-5)
        assert torch.allclose(face.codes, original(face.image), atol=1e-5)


def test_sparsify_each_matches_model_sparsify(tiny_model):
    face = _face(tiny_model)
    ks = [1, 2, 7, 16, 32]
    sparse = sparsify_each(face.codes, ks)
    assert sparse.shape == (len(ks), 4, 32)
    for row, k in enumerate(ks):
        assert torch.equal(sparse[row : row + 1], tiny_model.sparsify(face.codes, k))


def test_curve_ks_is_dense_at_low_k_and_ends_at_k_max():
    for k_max in (1, 7, 16, 24, 100, 128, 256):
        ks = curve_ks(k_max)
        assert ks[0] == 1 and ks[-1] == k_max and ks == sorted(set(ks))
        assert ks[: min(8, k_max)] == list(range(1, min(8, k_max) + 1))  # every k up to 8
        steps = np.diff(ks)
        assert all(later >= earlier for earlier, later in zip(steps[:-1], steps[1:-1], strict=False))  # the last step may be short
    assert curve_ks(16) == [*range(1, 9), 10, 12, 14, 16]
    assert curve_ks(128)[-5:] == [64, 80, 96, 112, 128] and len(curve_ks(128)) == 24 and len(curve_ks(64)) == 20


def test_the_curve_drawn_through_its_points_stays_on_the_curve_of_every_k():
    """The chart joins the sampled k with straight lines: on a real face, with each bundled model, those lines stay
    within 0.1 dB and 0.01 SSIM of the scores at every k."""
    bundled, failures = load_served([])
    assert not failures and sorted(served.loaded.directory.name for served in bundled) == sorted(files.bundled_models())
    store = FaceStore(bundled, Uploads(keep=()))  # the app's own path from a photo to each model's encoded face
    ref = FaceRef(store.add(Image.open(EXAMPLES / "astronaut.png")), whole=False)
    for served in bundled:
        model = served.model
        every = quality_curve(model, store.view(ref, served).face, list(range(1, model.k_max + 1)))
        sampled = np.array(curve_ks(model.k_max))
        for scores, bound in ((every.psnr, 0.1), (every.ssim, 0.01)):
            assert np.abs(np.interp(every.ks, sampled, scores[sampled - 1]) - scores).max() <= bound, served.name


def test_quality_curve_is_one_batched_decode_matching_each_k(tiny_model, monkeypatch):
    face = _face(tiny_model)
    calls = _count_decodes(tiny_model, monkeypatch)
    curve = quality_curve(tiny_model, face)
    assert calls == [len(curve_ks(tiny_model.k_max))] and curve.ks.tolist() == curve_ks(tiny_model.k_max)
    for index, k in enumerate(curve.ks.tolist()):
        with torch.inference_mode():
            image = tiny_model.decode(tiny_model.sparsify(face.codes, k))
        assert np.isclose(curve.psnr[index], psnr(face.image, image)[0]) and np.isclose(curve.ssim[index], ssim(face.image, image)[0])
    few = quality_curve(tiny_model, face, [2, 8])
    assert few.ks.tolist() == [2, 8] and np.isclose(few.psnr[1], curve.psnr[curve.ks.tolist().index(8)])


def test_privacy_view_is_one_share_and_one_batched_decode(served, monkeypatch):
    face = _face(served.model)
    shares = []
    original = pipeline.share_codes
    monkeypatch.setattr(pipeline, "share_codes", lambda model, codes, *a, **o: shares.append(codes) or original(model, codes, *a, **o))
    calls = _count_decodes(served.model, monkeypatch)
    view = privacy_view(served, face, ShareSettings(k=4, extra_attack="magnitude"))
    assert len(shares) == 2 and shares[0] is face.codes and shares[1] is face.mirror_codes  # the face once; its mirror for linkage
    assert calls == [4]  # key holder, decoded as is, guess, magnitude: code panels in one decode
    assert [p.name for p in view.panels] == ["key holder", "decode as is", "guess", "magnitude"]
    assert all(p.image.shape == (3, 64, 64) and np.isfinite(p.psnr) and np.isfinite(p.ssim) for p in view.panels)
    for panel in view.panels:
        assert np.isclose(panel.psnr, psnr(face.image, panel.image[None])[0]) and np.isclose(
            panel.ssim, ssim(face.image, panel.image[None])[0]
        )


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
@pytest.mark.parametrize("owner_fraction", [1.0, 0.5])
def test_the_key_holder_panel_is_reveal(served, scheme, owner_fraction):
    face = _face(served.model)
    view = privacy_view(served, face, ShareSettings(k=8, scheme=scheme, owner_fraction=owner_fraction))
    granted = view.key if owner_fraction == 1 else restrict(view.public, view.key, owner_fraction)
    with torch.inference_mode():
        expected = served.model.decode(reveal(view.public, granted))[0]
    assert torch.allclose(view.panels[0].image, expected, atol=1e-5) and view.granted == granted.granted
    assert view.granted == 8 * 4 if owner_fraction == 1 else 0 < view.granted < 8 * 4
    assert view.public.keyed == (scheme == "keyed") and view.public.k_prime == 32


def test_the_key_holder_without_decoys_is_the_plain_reconstruction(served):
    """Up to the 8-bit levels the code is stored in."""
    face = _face(served.model)
    holder = privacy_view(served, face, ShareSettings(k=4, scheme="paper", decoys=False, permute=False, extra_attack=NO_EXTRA)).panels[0]
    with torch.inference_mode():
        plain = served.model.decode(served.model.sparsify(face.codes, 4))
    assert psnr(plain, holder.image[None])[0] > 40


def test_a_view_is_reproducible_and_follows_the_seed(served):
    face = _face(served.model)
    first, again = (privacy_view(served, face, ShareSettings(k=4)) for _ in range(2))
    assert first.public.to_bytes() == again.public.to_bytes() and all(
        torch.equal(a.image, b.image) for a, b in zip(first.panels, again.panels, strict=True)
    )
    other = privacy_view(served, face, ShareSettings(k=4, seed=1))
    assert other.public.to_bytes() != first.public.to_bytes()


def test_the_guess_knowing_the_whole_key(served):
    """It knows which public entries are true: with the values in the clear and no permutation that is the key holder's
    code; a permutation or the keyed scheme's pads (neither is in the known share) still stand in its way."""
    face = _face(served.model)
    plain = privacy_view(served, face, ShareSettings(k=4, scheme="paper", permute=False, known_fraction=1.0, extra_attack=NO_EXTRA))
    holder, guess = plain.panels[0], plain.panels[2]
    assert guess.name == "guess" and guess.title == "Guess 4 of 32, knows 100%" and torch.allclose(guess.image, holder.image, atol=1e-5)
    for settings in (ShareSettings(k=4, scheme="paper", known_fraction=1.0), ShareSettings(k=4, scheme="keyed", known_fraction=1.0)):
        view = privacy_view(served, face, settings)
        assert not torch.allclose(view.panels[2].image, view.panels[0].image, atol=1e-3)
    blind = privacy_view(served, face, ShareSettings(k=4, scheme="paper", permute=False, known_fraction=0.0, extra_attack=NO_EXTRA))
    assert blind.panels[2].title == "Guess 4 of 32" and not torch.allclose(blind.panels[2].image, blind.panels[0].image, atol=1e-3)


def test_panel_titles_follow_the_settings():
    titles = panel_titles(ShareSettings(k=4, owner_fraction=0.25, decoys=False, known_fraction=0.5), 32)
    assert titles["key holder"] == "Key holder (25% of the key)"
    assert titles["decode as is"] == "No key, decoded as is (no decoys)" and titles["guess"] == "Guess 4 of 4, knows 50%"
    titles = panel_titles(ShareSettings(k=4, k_prime_ratio=2.0, known_fraction=0.0), 32)
    assert titles["key holder"] == "Key holder (all of the key)"
    assert titles["decode as is"] == "No key, decoded as is (k' = 8)" and titles["guess"] == "Guess 4 of 8"
    assert all(titles[name] == ATTACKS[name].title for name in EXTRA_ATTACKS)


@pytest.mark.parametrize("extra", ["learned (keep k)", "learned (soft)", "regression"])
def test_an_extra_attack_without_its_fitted_part_is_hidden_with_the_reason(served, extra):
    view = privacy_view(served, _face(served.model), ShareSettings(k=4, scheme="paper", extra_attack=extra))
    assert [p.name for p in view.panels] == ["key holder", "decode as is", "guess"]
    assert view.hidden.startswith("no ") and "beside the model" in view.hidden


def test_no_extra_attack_hides_nothing(served):
    view = privacy_view(served, _face(served.model), ShareSettings(k=4, extra_attack=NO_EXTRA))
    assert [p.name for p in view.panels] == ["key holder", "decode as is", "guess"] and view.hidden == ""


def test_re_encode_attack_panel(served):
    view = privacy_view(served, _face(served.model), ShareSettings(k=4, extra_attack="re-encode"))
    assert view.panels[-1].name == "re-encode" and view.panels[-1].title == "Re-encode attack"


@pytest.fixture
def shipped(shipped_model_dir):
    return serve(load_model(str(shipped_model_dir), fallback=None))


def test_the_learned_attack_is_shown_on_paper_codes_and_hidden_on_keyed_ones(shipped):
    face = _face(shipped.model)
    for extra in ("learned (keep k)", "learned (soft)"):
        view = privacy_view(shipped, face, ShareSettings(k=4, scheme="paper", extra_attack=extra))
        assert view.panels[-1].name == extra and view.hidden == ""
        keyed = privacy_view(shipped, face, ShareSettings(k=4, scheme="keyed", extra_attack=extra))
        assert keyed.panels[-1].name == "guess" and "not fitted on keyed codes" in keyed.hidden


def test_the_regression_makes_its_image_without_a_decode_at_its_setting_only(shipped, monkeypatch):
    face = _face(shipped.model)
    settings = ShareSettings(k=SHIPPED_K, scheme="paper", k_prime_ratio=SHIPPED_K_PRIME / SHIPPED_K, extra_attack="regression")
    calls = _count_decodes(shipped.model, monkeypatch)
    view = privacy_view(shipped, face, settings)
    assert calls == [3] and [p.name for p in view.panels] == ["key holder", "decode as is", "guess", "regression"]
    last = view.panels[-1]
    assert last.title == "Regression attack" and last.image.shape == (3, 64, 64) and np.isfinite(last.psnr)
    assert np.isclose(last.psnr, psnr(face.image, last.image[None])[0])
    other = privacy_view(shipped, face, ShareSettings(k=SHIPPED_K + 1, scheme="paper", extra_attack="regression"))
    assert other.panels[-1].name == "guess" and other.hidden.startswith(f"fitted for the paper's scheme at k = {SHIPPED_K}")


def test_linkage_paper_values_are_all_found_keyed_ones_at_chance(served):
    face = _face(served.model)
    k, groups = 8, served.model.num_groups
    paper = privacy_view(served, face, ShareSettings(k=k, scheme="paper"))
    assert paper.found == k * groups and paper.found_elsewhere < k * groups // 2
    keyed = privacy_view(served, face, ShareSettings(k=k, scheme="keyed"))
    assert keyed.found < k * groups // 2 and keyed.found_elsewhere < k * groups // 2  # as many as in another image's code
    assert abs(keyed.found - keyed.found_elsewhere) < k * groups // 4
