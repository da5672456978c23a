from __future__ import annotations

import json

from sae import evaluate


def test_evaluation_writes_tables(tiny_model, fake_celeba, tmp_path):
    result = evaluate.run(tiny_model, fake_celeba, cache_dir=str(tmp_path / "cache"), budgets=(8, 16, 32))
    assert [r["nonzeros"] for r in result["rows"]] == [8, 16, 32]
    assert len(result["curve"]) == tiny_model.k_max
    for row in result["rows"]:
        for method in ("model", "pca_first_n", "pca_largest_n", "jpeg"):
            assert set(row[method]) >= {"psnr", "ssim"}
        assert row["jpeg"]["mean_bytes"] > 0
    evaluate.write(result, tmp_path / "out")
    table = (tmp_path / "out" / "evaluation.md").read_text()
    assert "| 8 (2) |" in table and "Mean face" in table
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["test_faces"] == 4
    assert (tmp_path / "out" / "evaluation.html").stat().st_size > 1000


def test_budgets_beyond_k_max_are_dropped(tiny_model, fake_celeba, tmp_path):
    result = evaluate.run(tiny_model, fake_celeba, cache_dir=None, budgets=(8, 640))
    assert [r["budget"] for r in result["rows"]] == [8]


def test_cli_on_real_faces(tiny_model, celeba_root, tmp_path):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    argv = ["--model", str(model_dir), "--data", str(celeba_root), "--out", str(tmp_path / "o")]
    evaluate.main(argv + ["--limit", "3", "--train-limit", "200", "--budgets", "16", "--cache-dir", str(tmp_path / "c")])
    result = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert result["test_faces"] == 3 and "| 16 (4) |" in (tmp_path / "o" / "evaluation.md").read_text()
    # a random model must not beat PCA: the numbers are real, not placeholders
    assert result["rows"][0]["model"]["psnr"] < result["rows"][0]["pca_first_n"]["psnr"]
