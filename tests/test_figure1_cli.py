"""``deflation figure1`` end to end at a reduced horizon."""

import subprocess
import sys

import numpy as np


def test_figure1_command_writes_png_data_and_table(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "deflation.cli", "figure1", "--seeds", "2", "--t-end", "150", "--points", "151",
         "--rtol", "1e-8", "--atol", "1e-8", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    assert "fitted in order u_1, ..., u_5: 2/2 seeds" in out.stdout
    png = tmp_path / "figure1.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    data = np.load(tmp_path / "figure1.npz")
    assert data["loss"].shape == (2, 151) and data["residual"].shape == (2, 151, 5)
    assert data["fit_time"].shape == (2, 5) and np.isfinite(data["fit_time"]).all()
    assert (np.diff(data["fit_time"], axis=1) > 0).all()
    # the printed fit times are the saved ones
    row = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("1 ")][0].split()
    np.testing.assert_allclose([float(x) for x in row[-2:]], data["fit_time"][:, 0], atol=0.006)
