"""Prediction wrappers: ε, x̂0, v and score networks describing the same model give the same views."""

import pytest
import torch

import diffsolve as ds

S = ds.VPLinear()
F64 = torch.float64


def _eps_net(x, t):
    return torch.tanh(x) * (0.5 + t.reshape(-1, 1))


def _as(prediction):
    """The same model as a network predicting `prediction`, built from _eps_net."""

    def net(x, t):
        p = ds.make_point(S, float(t[0]))
        eps = _eps_net(x, t)
        x0 = (x - p.sigma * eps) / p.alpha
        return {"eps": eps, "x0": x0, "v": p.alpha * eps - p.sigma * x0, "score": -eps / p.sigma}[prediction]

    return net


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_every_parameterization_gives_the_same_eps_and_x0(prediction):
    x = torch.randn(5, 4, dtype=F64)
    ref = ds.EpsModel(_eps_net, S)
    m = ds.wrap(_as(prediction), S, prediction)
    for t in (0.002, 0.3, 0.97):
        assert torch.allclose(m.eps(x, t), ref.eps(x, t), rtol=1e-10, atol=1e-12)
        assert torch.allclose(m.x0(x, t), ref.x0(x, t), rtol=1e-10, atol=1e-10)
        assert torch.allclose(m.score(x, t), -ref.eps(x, t) / float(S.sigma(t)), rtol=1e-10)
    assert m.nfe == 9


def test_ve_coordinates_feed_x_bar_to_the_network():
    seen = []
    model = ds.X0Model(lambda xb, t: seen.append(xb) or torch.zeros_like(xb), ds.EDM(), coords="ve")
    p = ds.make_point(ds.EDM(), 3.0)
    x_vp = torch.ones(2, 2, dtype=F64)
    eps = model.eps_at(x_vp, p)
    assert torch.allclose(seen[0], x_vp / p.alpha)
    assert torch.allclose(eps, x_vp / p.sigma)  # x0 = 0 ⇒ ε = x/σ


def test_classifier_free_guidance_is_one_batched_call():
    calls = []

    def net(x, t, cond):
        calls.append(x.shape[0])
        return 0.1 * x + cond[:, None]

    base = ds.EpsModel(net, S)
    x = torch.randn(3, 2, dtype=F64)
    cfg = ds.CFG(base, cond=torch.ones(3, dtype=F64), uncond=torch.zeros(3, dtype=F64), scale=2.5)
    eps = cfg.eps(x, 0.5)
    assert calls == [6] and cfg.nfe == 1
    assert torch.allclose(eps, 0.1 * x + 2.5)  # ε_u + w(ε_c − ε_u) = 0.1x + 0 + 2.5·1
    one = ds.CFG(base, cond=torch.ones(3, dtype=F64), uncond=torch.zeros(3, dtype=F64), scale=1.0)
    cond_only = ds.EpsModel(net, S, model_kwargs={"cond": torch.ones(3, dtype=F64)})
    assert torch.allclose(one.x0(x, 0.5), cond_only.x0(x, 0.5))


def test_discrete_model_receives_integer_steps_on_the_knots():
    seen = []
    sched = ds.DiscreteDDPM()
    model = ds.EpsModel(lambda x, t: seen.append(t) or torch.zeros_like(x), sched)
    grid = ds.grids.custom(sched, sched.t_from_step(torch.tensor([999, 500, 0])))
    ds.solve(ds.ode(model, "sigma"), torch.randn(2, 3, dtype=F64), grid, "euler")
    assert [float(t[0]) for t in seen] == pytest.approx([999.0, 500.0], abs=1e-9)


def test_finite_checks_blame_the_input_state_or_the_network_call():
    grid = ds.grids.logsnr(S, 4)
    x = torch.randn(3, 2, dtype=F64)
    bad_x = x.clone()
    bad_x[1, 0] = float("nan")
    model = ds.EpsModel(lambda v, t: 0.1 * v, S)
    with pytest.raises(ds.ModelError, match="input state .* holds NaN or Inf"):
        ds.solve(ds.ode(model), bad_x, grid, "euler")
    calls = []

    def net(v, t):
        calls.append(1)
        return v * (float("inf") if len(calls) == 3 else 0.1)

    with pytest.raises(ds.ModelError, match="network returned NaN or Inf .* at network call 3"):
        ds.solve(ds.ode(ds.EpsModel(net, S)), x, grid, "euler")


def test_finite_checks_records_move_between_models():
    a = ds.EpsModel(lambda v, t: 0.1 * v, S)
    a.eps(torch.ones(2, 2, dtype=F64), 0.5)
    a.finite_checks.record(torch.tensor([float("inf")]), 0.25)
    assert len(a.finite_checks) == 2 and len(a.finite_checks.since(1)) == 1
    b = ds.EpsModel(lambda v, t: v, S)
    b.finite_checks.extend(a.finite_checks.since(1))
    a.finite_checks.clear()
    a.raise_if_not_finite()  # cleared: nothing to report
    with pytest.raises(ds.ModelError, match=r"network call 1 \(t = 0.25\)"):
        b.finite_checks.raise_if_bad()
    assert len(b.finite_checks) == 0  # raising forgets the checks


# ---- messages that blame the right thing (issue 15 §2) -------------------------------------------------
def test_a_state_that_does_not_fit_the_network_names_both_shapes():
    from diffsolve.nets import MLPEps

    net = MLPEps(dim=2).double()
    model = ds.EpsModel(net, S)
    with pytest.raises(ds.ModelError, match=r"shape \(4, 3\) but the network takes states of shape \(batch, 2\)"):
        ds.solve(ds.ode(model), torch.randn(4, 3, dtype=F64), ds.grids.logsnr(S, 3), "euler")
    bare = ds.EpsModel(lambda x, t: net(x, t), S)  # no data_shape: the first call's error is wrapped
    with pytest.raises(ds.ModelError, match=r"first call with a state of shape \(4, 3\).*mat1 and mat2"):
        bare.eps(torch.randn(4, 3, dtype=F64), 0.5)
    assert bare.nfe == 0
    assert bare.eps(torch.randn(4, 2, dtype=F64), 0.5).shape == (4, 2)  # a fitting shape still works


def test_integer_network_output_is_refused():
    model = ds.EpsModel(lambda x, t: torch.zeros(x.shape, dtype=torch.int64), S)
    with pytest.raises(ds.ModelError, match="floating-point tensor of the input's shape"):
        model.eps(torch.randn(2, 2), 0.5)


def test_cfg_refuses_bad_scales_and_mismatched_batches():
    base = ds.EpsModel(lambda x, t, cond: 0.1 * x + cond[:, None], S)
    c, u = torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)
    for bad in (float("nan"), float("inf"), "abc", True):
        with pytest.raises(ds.ModelError, match="guidance scale must be a finite number"):
            ds.CFG(base, c, u, scale=bad)
    with pytest.raises(ds.ModelError, match=r"one shape .* got \(3,\) and \(2,\)"):
        ds.CFG(base, c, torch.zeros(2, dtype=F64), scale=2.0)
    cfg = ds.CFG(base, c, u, scale=2.0)
    with pytest.raises(ds.ModelError, match="state has batch 5 but CFG's cond/uncond have 3 rows"):
        cfg.eps(torch.randn(5, 2, dtype=F64), 0.5)


def test_empty_batch_is_not_answered_with_x_none():
    model = ds.EpsModel(lambda x, t: x, S)
    with pytest.raises(ds.ModelError, match=r"at least one sample, got shape \(0, 2\); draw n >= 1 samples"):
        ds.solve(ds.ode(model), torch.zeros(0, 2), ds.grids.logsnr(S, 3), "euler")


# ---- mixed precision (issue 15 §6) ----------------------------------------------------------------------
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_network_with_a_float32_state(half):
    """Model(..., net_dtype=half): the net runs in half, the solver state and its arithmetic stay float32."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    seen = []

    def run(dtype):
        def f(x, t):
            seen.append((x.dtype, t.dtype))
            return net(x) * 0.5
        return f

    ref = ds.EpsModel(run(torch.float32), S)
    x = torch.randn(8, 4)
    exact = ds.sample(ref, x, solver="dpmpp2m", nfe=8).x
    net.to(half)
    with pytest.raises(ds.ModelError, match=f"pass net_dtype={half}"):
        ds.sample(ds.EpsModel(net, S), x, solver="dpmpp2m", nfe=8)
    seen.clear()
    model = ds.EpsModel(run(half), S, net_dtype=half)
    sol = ds.sample(model, x, solver="dpmpp2m", nfe=8)
    assert sol.x.dtype == torch.float32 and sol.nfe == 8
    assert set(seen) == {(half, torch.float32)}  # half inputs, float32 times (bf16 cannot hold t = 999)
    tol = 2e-2 if half == torch.bfloat16 else 3e-3
    assert float((sol.x - exact).abs().max()) < tol * float(exact.abs().max())


def test_half_overflow_is_blamed_on_the_network_with_the_mixed_precision_hint():
    model = ds.EpsModel(lambda x, t: x * 1e5, S, net_dtype=torch.float16)
    with pytest.raises(ds.ModelError, match="network returned NaN or Inf .* net_dtype"):
        ds.sample(model, torch.ones(2, 2), solver="euler", nfe=2)


def test_time_scale_multiplies_the_network_time():
    seen = []
    model = ds.EpsModel(lambda x, t: seen.append(t) or x, ds.Flow(), time_scale=1000.0)
    model.eps(torch.ones(2, 2), 0.25)
    assert float(seen[0][0]) == pytest.approx(250.0)
    with pytest.raises(ds.ModelError, match="time_scale must be a finite number > 0"):
        ds.EpsModel(lambda x, t: x, S, time_scale=0.0)
