"""Small networks: training lowers the loss, checkpoints round-trip, the shipped models are sane."""

import pytest
import torch

import diffsolve as ds
from diffsolve import nets, training
from diffsolve.bench.metrics import sliced_w2


@pytest.mark.parametrize("name,batch", [("toy-2d", 256), ("digits-8x8", 16)])
def test_training_lowers_loss_and_checkpoint_round_trips(name, batch, tmp_path):
    torch.set_num_threads(1)
    net, ckpt = training.train(name, steps=60, batch=batch, seed=3, log_every=20, log=lambda s: None)
    first, last = ckpt["loss_history"][0][1], ckpt["loss_history"][-1][1]
    assert last < 0.8 * first, ckpt["loss_history"]
    path = training.save(net, ckpt, tmp_path / f"{name}.pt", f"diffsolve train {name} --steps 60")
    model, meta = nets.load_checkpoint(path)
    assert meta["command"].endswith("--steps 60") and meta["seed"] == 3 and meta["schedule"]["type"] == "VPLinear"
    x = torch.randn((5, 2) if name == "toy-2d" else (5, 1, 8, 8))
    t = torch.full((5,), 0.3)
    torch.testing.assert_close(model.eps(x, 0.3), net(x, t), rtol=0, atol=0)


def test_training_is_deterministic_for_a_seed():
    a = training.train("toy-2d", steps=15, batch=32, seed=11, log_every=5, log=lambda s: None)[1]
    b = training.train("toy-2d", steps=15, batch=32, seed=11, log_every=5, log=lambda s: None)[1]
    assert a["loss_history"] == b["loss_history"]


@pytest.mark.parametrize("name,shape", [("toy-2d", (7, 2)), ("digits-8x8", (7, 1, 8, 8))])
def test_shipped_checkpoints_load(name, shape):
    model = nets.load_pretrained(name)
    assert isinstance(model.schedule, ds.VPLinear) and model.prediction == "eps"
    for t in (model.schedule.t_min, 0.5, model.schedule.t_max):
        e = model.eps(torch.randn(shape), t)
        assert e.shape == shape and bool(torch.isfinite(e).all())
    meta = torch.load(nets.checkpoint_path(name), weights_only=True)
    assert meta["command"].startswith(f"diffsolve train {name}") and meta["seed"] == 0
    assert nets.checkpoint_path(name).stat().st_size < 2 * 1024 * 1024
    m64 = nets.load_pretrained(name, dtype=torch.float64)
    assert next(m64.net.parameters()).dtype == torch.float64


def test_toy_eps_matches_the_ring_score():
    """The ring is a Gaussian mixture: ε* = −σ ∇log p_t is exact; the trained net must be near it."""
    model = nets.load_pretrained("toy-2d", dtype=torch.float64)
    s = model.schedule
    x0 = nets.toy_2d(2000, 99).double()
    g = torch.Generator().manual_seed(0)
    for t, tol in ((0.05, 0.2), (0.3, 0.05), (0.9, 0.05)):
        a, sig = float(s.alpha(t)), float(s.sigma(t))
        xt = (a * x0 + sig * torch.randn(x0.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
        (score,) = torch.autograd.grad(nets.toy_2d_logp(xt, a, sig).sum(), xt)
        rms = float(((model.eps(xt.detach(), t) + sig * score) ** 2).mean().sqrt())
        assert rms < tol, (t, rms)


def test_toy_samples_close_to_the_data():
    # Measured on the shipped checkpoint (2-core CPU dev box): SW2 = 0.108 with heun at 40 NFE (0.088 with
    # rk4 at 100), against 0.048-0.109 between pairs of independent 2,000-point data sets; untrained: 153.
    torch.set_num_threads(1)
    x_t = torch.randn(2000, 2, generator=torch.Generator().manual_seed(7))
    data = nets.toy_2d(2000, 123)
    sol = ds.sample(nets.load_pretrained("toy-2d"), x_t, solver="heun", nfe=40)
    assert sliced_w2(sol.x, data) < 0.15
    untrained = ds.EpsModel(nets.build_net("mlp", training.TASKS["toy-2d"].config).eval(), ds.VPLinear())
    with torch.no_grad():
        bad = ds.sample(untrained, x_t, solver="heun", nfe=40)
    assert sliced_w2(bad.x, data) > 0.3


def test_data_helpers_and_errors():
    train, test = nets.digits_levels("train"), nets.digits_levels("test")
    assert train.shape == (1500, 1, 8, 8) and test.shape == (297, 1, 8, 8)
    assert float(train.max()) == 16 and float(train.min()) == 0
    x = nets.dequantize(test, torch.Generator().manual_seed(0))
    assert float(x.min()) >= -1 and float(x.max()) < 1
    torch.testing.assert_close(nets.to_levels(x), test)
    with pytest.raises(ds.ModelError, match="toy-2d"):
        nets.load_pretrained("cifar")
    with pytest.raises(ds.DiffsolveError, match="unknown training task"):
        training.train("mnist", steps=1)
    with pytest.raises(ds.ModelError, match="split"):
        nets.digits_levels("valid")
