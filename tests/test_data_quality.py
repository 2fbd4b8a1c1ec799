"""Quality against the user's data (diffsolve.bench.data): sliced W2, MMD² and a Fréchet distance in a feature space
between a cell's samples and real samples, each beside its floor; the data's and features' fingerprints in the
cell key; wrong data refused with the fix named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import diffsolve as ds
from diffsolve.bench import Suite, expand_run, metrics
from diffsolve.bench.data import DataError, yardstick
from diffsolve.problems import GaussianMixture, get

F64 = torch.float64
ROOT = Path(__file__).resolve().parent.parent


def exact_data(prob, count: int, seed: int) -> torch.Tensor:
    """Exact samples of p_{t_end} in data coordinates x/α(t_end): what a perfect sampler's output looks like."""
    sched = prob.default_schedule()
    return prob.samples(count, seed, sched, sched.t_min, stream=9) / float(sched.alpha(sched.t_min))


def by_solver(res) -> dict[tuple[str, int], dict]:
    assert not res.failed, [r["error"] for r in res.failed]
    return {(r["solver"], r["nfe_target"]): r for r in res.records}


def test_exact_data_put_an_accurate_solver_at_the_floor_and_two_euler_steps_above_it():
    """gmm-2d, data = 2048 exact samples of p_{t_end}: DPM-Solver++(3M) at NFE 20 (RMSE 1e-2) is indistinguishable
    from the data (SW2 within 1.5× its floor, |MMD²| within its noise), 2 Euler steps are not (SW2 ≥ 2× the floor,
    MMD² ≥ 10× its noise); mode flips tell the same story against the reference."""
    res = ds.bench.run("gmm-2d", solvers=["euler", "dpmpp3m"], nfe=[2, 20], variables=["t"], n=512,
                       data=exact_data(get("gmm-2d"), 2048, 7), progress=False)
    recs = by_solver(res)
    good, bad = recs[("dpmpp3m", 20)], recs[("euler", 2)]
    for r in (good, bad):
        assert r["data_n"] == 512 and r["data_fd"] is None and r["data_fd_floor"] is None
        assert r["data_sw2_floor"] == good["data_sw2_floor"] and r["data_mmd2_floor"] == good["data_mmd2_floor"]
    assert good["rmse"] < 0.02 and good["data_sw2"] <= 1.5 * good["data_sw2_floor"]
    assert abs(good["data_mmd2"]) <= good["data_mmd2_floor"]
    assert bad["data_sw2"] >= 2 * bad["data_sw2_floor"] and bad["data_mmd2"] >= 10 * bad["data_mmd2_floor"]
    assert good["flips"] < 0.01 * 512 < 0.2 * 512 < bad["flips"]
    assert good["err_median"] < good["err_p90"] <= good["max_err"]


def _two_bumps_16d() -> GaussianMixture:
    g = torch.Generator().manual_seed(5)
    return GaussianMixture(torch.tensor([0.5, 0.5]), torch.randn(2, 16, generator=g, dtype=F64),
                           torch.full((2, 16), 0.3, dtype=F64), name="bumps-16")


def _conv_features(seed: int) -> nn.Module:
    """A small random conv net on 4×4 "images" (16-d samples), 16 features: no training, no download."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(),
                         nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten())


def test_frechet_distance_in_a_random_conv_nets_feature_space():
    """With a user's feature network the FD of an accurate solver sits near its floor (two halves of the data) and
    that of 2 Euler steps far above; changed weights change the cells' keys."""
    mix = _two_bumps_16d()
    res = ds.bench.run(mix, solvers=["euler", "dpmpp3m"], nfe=[2, 20], variables=["t"], n=256,
                       data=exact_data(mix, 1024, 8), features=_conv_features(0), progress=False)
    recs = by_solver(res)
    good, bad = recs[("dpmpp3m", 20)], recs[("euler", 2)]
    assert good["data_fd"] <= 2 * good["data_fd_floor"] and bad["data_fd"] >= 10 * bad["data_fd_floor"]
    run = {"problem": mix, "solvers": ["euler"], "nfe": [2], "grids": ["logsnr"], "variables": ["t"],
           "data": exact_data(mix, 64, 8)}
    keys = {expand_run({**run, "features": f})[0].key for f in (_conv_features(0), _conv_features(1))}
    assert len(keys) == 2


def test_identity_features_give_the_frechet_distance_of_the_samples_themselves():
    """features = nn.Flatten(): data_fd is the FD of Gaussian fits to x̄ and the reference half B_0 themselves (fed to
    a parameterless callable in float32), and data_sw2 / data_mmd2 are metrics' functions of the same two sets."""
    mix = _two_bumps_16d()
    data = exact_data(mix, 256, 1)
    stick = yardstick(data, 100, (16,), 32, nn.Flatten())
    assert stick.m == 100 and stick.ref.shape == (128, 16)
    assert torch.equal(stick.ref_features, stick.ref.float().double())
    x = exact_data(mix, 150, 2)
    got = stick.measure(x)
    assert got["data_fd"] == metrics.frechet_distance(x[:100].float(), stick.ref_features)
    assert got["data_sw2"] == metrics.sliced_w2(x[:100], stick.ref, metrics.projections(16, 32))
    assert got["data_mmd2"] == pytest.approx(metrics.mmd2(x[:100], stick.ref, metrics.median_bandwidth(data)),
                                             rel=1e-12)
    rows = {tuple(r) for r in data.tolist()}
    assert all(tuple(r) in rows for r in stick.ref.tolist())  # B_0 is half of the data


def test_data_files_and_tensors_share_one_hash_and_changed_data_change_the_key(tmp_path):
    data = exact_data(get("gmm-2d"), 64, 3)
    torch.save(data, tmp_path / "d.pt")
    np.save(tmp_path / "d.npy", data.numpy())
    run = {"problem": "gmm-2d", "solvers": ["euler"], "nfe": [4], "grids": ["logsnr"], "variables": ["t"]}
    plain = expand_run(run)[0]
    with_data = [expand_run({**run, "data": d})[0] for d in (data, str(tmp_path / "d.pt"), tmp_path / "d.npy")]
    assert len({c.key for c in with_data}) == 1 and with_data[0].data.startswith("data:")
    assert expand_run({**run, "data": data * 1.001})[0].key != with_data[0].key
    assert '"data"' not in plain.key and '"features"' not in plain.key and plain.data == ""
    stored = {json.loads(line)["key"] for line in (ROOT / "benchmarks/results/default/results.jsonl").open()}
    assert {c.key for c in Suite.load("default").cells} == stored  # records stored before data existed stay valid
    toml = tmp_path / "s.toml"
    toml.write_text(f'problem = "gmm-2d"\nsolvers = ["euler"]\nnfe = [4]\ngrids = ["logsnr"]\nvariables = ["t"]\n'
                    f'data = "{tmp_path / "d.npy"}"\n')
    assert Suite.load(toml).cells[0].key == with_data[0].key


def test_wrong_data_and_features_are_refused_with_the_fix(tmp_path):
    run = {"problem": "gmm-2d", "solvers": ["euler"], "nfe": [4], "grids": ["logsnr"], "variables": ["t"]}
    good = exact_data(get("gmm-2d"), 64, 3)
    nan = good.clone()
    nan[5, 1] = float("nan")
    (tmp_path / "d.txt").write_text("1 2\n")
    cases = [
        (torch.zeros(64, 3, dtype=F64) + torch.arange(3.0), r"shape \(3,\) but problem 'gmm-2d' makes samples of "
                                                            r"shape \(2,\); give data of shape \(N, 2\)"),
        (nan, "non-finite values .* in 1 sample.* row 5; remove those samples"),
        (good[:10], "at least 16"),
        (good.round().to(torch.int64), "floating-point samples"),
        (good[:, 0], r"shape \(N, \*sample_shape\)"),
        (str(tmp_path / "d.txt"), "suffix '.txt'; give a .pt tensor"),
        (str(tmp_path / "missing.pt"), "does not exist"),
        ([[0.0, 1.0]] * 20, "must be a tensor, a numpy array or the path"),
    ]
    for data, message in cases:
        with pytest.raises(DataError, match=message):
            expand_run({**run, "data": data})
    with pytest.raises(ds.DiffsolveError, match="give data = 'samples.pt'"):
        expand_run({**run, "features": nn.Flatten()})
    with pytest.raises(DataError, match="cannot be fingerprinted .* features_fingerprint="):
        expand_run({**run, "data": good, "features": lambda x: x})
    cell = expand_run({**run, "data": good, "features": lambda x: x, "features_fingerprint": "identity-v1"})[0]
    assert cell.features == "features:given:identity-v1"
    with pytest.raises(DataError, match=r"to a \(2, F\) tensor, got shape \(2,\); flatten its output"):
        expand_run({**run, "data": good, "features": lambda x: x.sum(1), "features_fingerprint": "sum"})
    with pytest.raises(ds.DiffsolveError, match="features .nowhere:thing.: cannot import module"):
        expand_run({**run, "data": good, "features": "nowhere:thing"})
