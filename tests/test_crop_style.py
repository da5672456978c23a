"""The crop calibration tool (sae.cli.crop_style) reproduces the framing sae.core.faces.CROP_STYLES holds."""

from __future__ import annotations

import pytest

from sae.cli import crop_style
from sae.core.faces import CROP_STYLES


def test_the_tool_measures_celeba_framing_near_the_shipped_style(celeba_root, capsys):
    result = crop_style.measure(str(celeba_root), 40)
    assert result["tried"] == 40 and result["detected"] >= 30
    assert result["scale"] == pytest.approx(CROP_STYLES["celeba"].scale, abs=0.1)
    assert result["shift"] == pytest.approx(CROP_STYLES["celeba"].shift, abs=0.05)
    crop_style.main(["--data", str(celeba_root), "--limit", "10"])
    assert capsys.readouterr().out.startswith("celeba: scale ")


def test_no_detection_is_one_clear_exit(fake_celeba):
    with pytest.raises(SystemExit, match="no face was detected"):
        crop_style.measure(str(fake_celeba), 5)  # random noise images: nothing looks like a face
