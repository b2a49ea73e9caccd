"""The compiled engine's learner against the torch learner: parity.

Same weights in, the same predictions, live states, weights and counters out after many
steps (float64, to 1e-10), for random cells, sizes, TBPTT(k1, k2), series and targets;
and the river estimators give the same forecasts and predictions with either engine.
"""

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.engines.compiled.learner import CompiledLearner as TinyLearner
from streamrnn.engines.compiled.learner import learner_eligible as tiny_eligible
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.river import RNNClassifier, RNNForecaster, RNNRegressor

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
TOL = 1e-10
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _model(cell, n_in, hidden, n_out, seed):
    return RecurrentModel(CELLS[cell](n_in, hidden, seed=seed),
                          Readout(hidden, n_out, seed=seed + 1)).double()


def _pair(cell, n_in, hidden, n_out, seed, k1, k2, **kw):
    tiny = TinyLearner(_model(cell, n_in, hidden, n_out, seed), k1=k1, k2=k2, lr=2e-2,
                       clip=1.0, **kw)
    ref = OnlineLearner(
        _model(cell, n_in, hidden, n_out, seed), k1=k1, k2=k2, clip=1.0,
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-2, fused=True),
        horizon=kw.get("horizon"), horizon_column=0 if kw.get("horizon") else None,
        target_kind=kw.get("target_kind", "values"),
    )
    return tiny, ref


def _assert_same(tiny, ref):
    weights = tiny.weights()
    for name, value in ref.model.state_dict().items():
        np.testing.assert_allclose(weights[name], value.numpy(), rtol=0, atol=TOL, err_msg=name)
    state = ref.state()
    for part, value in zip(state.parts, tiny.state(), strict=True):
        np.testing.assert_allclose(value, state[part].numpy().ravel(), rtol=0, atol=TOL)
    assert tiny.counts == {k: ref.counts[k] for k in tiny.counts}
    if ref.last_loss is not None:
        assert math.isclose(tiny.last_loss, ref.last_loss, rel_tol=1e-9, abs_tol=TOL)


windows = st.integers(1, 5).flatmap(lambda k1: st.tuples(st.just(k1), st.integers(k1, 12)))


@SETTINGS
@given(cell=st.sampled_from(sorted(CELLS)), hidden=st.integers(1, 12), n_in=st.integers(2, 5),
       window=windows, seed=st.integers(0, 10_000), steps=st.integers(1, 60),
       zero_cols=st.integers(0, 2))
def test_horizon_learning_equals_the_torch_learner(cell, hidden, n_in, window, seed, steps,
                                                   zero_cols):
    # The forecaster's mode: the target of step t is column 0 of the input of step t + 1.
    k1, k2 = window
    tiny, ref = _pair(cell, n_in, hidden, 1, seed, k1, max(k2, k1 + 1), horizon=1)
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(steps, n_in))
    xs[:, n_in - zero_cols:] = 0.0  # columns never seen non-zero are skipped exactly
    for x in xs:
        got = tiny.push(x).copy()
        want = ref.push(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    _assert_same(tiny, ref)


@SETTINGS
@given(cell=st.sampled_from(sorted(CELLS)), hidden=st.integers(1, 10), n_out=st.integers(1, 4),
       window=windows, seed=st.integers(0, 10_000), steps=st.integers(1, 50),
       kind=st.sampled_from(["values", "classes"]), gaps=st.integers(0, 3))
def test_targets_with_steps_equal_the_torch_learner(cell, hidden, n_out, window, seed, steps,
                                                    kind, gaps):
    # The regressor's and classifier's mode: a target with its step (MSE or
    # cross-entropy); every (gaps + 1)-th step has none.
    k1, k2 = window
    n_out = max(n_out, 2) if kind == "classes" else n_out
    tiny, ref = _pair(cell, 3, hidden, n_out, seed, k1, k2, target_kind=kind)
    rng = np.random.default_rng(seed)
    for t in range(steps):
        x = rng.normal(size=3)
        if gaps and t % (gaps + 1) == 0:
            target = None
        elif kind == "classes":
            target = int(rng.integers(n_out))
        else:
            target = rng.normal(size=n_out)
        got = tiny.push(x, target).copy()
        tg = None if target is None else torch.tensor(
            target, dtype=torch.long if kind == "classes" else torch.float64)
        want = ref.push(torch.from_numpy(x), tg).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    _assert_same(tiny, ref)


def test_a_non_finite_loss_skips_the_update_in_both():
    model = _model("gru", 2, 4, 1, 0)
    with torch.no_grad():  # a readout so large that the squared error overflows
        model.head.linear.weight.fill_(1e200)
    tiny = TinyLearner(model, k1=2, k2=4, lr=2e-2, clip=1.0, horizon=1)
    ref = OnlineLearner(model, k1=2, k2=4, clip=1.0, horizon=1, horizon_column=0,
                        optimizer=lambda p: torch.optim.Adam(p, lr=2e-2, fused=True))
    for x in np.random.default_rng(0).normal(size=(9, 2)):
        tiny.push(x)
        ref.push(torch.from_numpy(x))
    assert tiny.counts["skipped_nonfinite"] == ref.counts["skipped_nonfinite"] == 4
    assert tiny.counts["updates"] == 0
    _assert_same(tiny, ref)


def test_bad_input_raises_and_changes_nothing():
    tiny, _ = _pair("lstm", 2, 4, 1, 0, 2, 4, horizon=1)
    tiny.push(np.array([1.0, 2.0]))
    before = pickle.dumps(tiny)
    with pytest.raises(ValueError, match="finite"):
        tiny.push(np.array([1.0, np.nan]))
    assert pickle.dumps(tiny) == before


def test_pickled_mid_stream_continues_identically():
    tiny, _ = _pair("lstm", 3, 6, 1, 1, 2, 8, horizon=1)
    xs = np.random.default_rng(1).normal(size=(40, 3))
    for x in xs[:17]:
        tiny.push(x)
    twin = pickle.loads(pickle.dumps(tiny))
    for x in xs[17:]:
        assert np.array_equal(tiny.push(x), twin.push(x))
    assert all(np.array_equal(v, twin.weights()[k]) for k, v in tiny.weights().items())


def test_eligibility():
    assert tiny_eligible(_model("gru", 2, 4, 1, 0))
    two = RecurrentModel(LSTM(2, 4, num_layers=2, seed=0), Readout(4, 1, seed=1))
    nobias = RecurrentModel(LSTM(2, 4, bias=False, seed=0), Readout(4, 1, seed=1))
    assert not tiny_eligible(two) and not tiny_eligible(nobias)
    with pytest.raises(ValueError, match="compiled learner"):
        TinyLearner(two, k1=1, k2=1, lr=1e-2, clip=1.0)


@pytest.mark.parametrize("window", [(1, 1), (2, 5)])
def test_relu_rnn_learns_as_the_torch_learner(window):
    # The relu RNN's compiled form has a backward pass too (the old engine had tanh only).
    def relu_model():
        return RecurrentModel(RNN(3, 5, nonlinearity="relu", seed=2),
                              Readout(5, 1, seed=3)).double()

    k1, k2 = window
    tiny = TinyLearner(relu_model(), k1=k1, k2=k2, lr=2e-2, clip=1.0)
    ref = OnlineLearner(relu_model(), k1=k1, k2=k2, clip=1.0,
                        optimizer=lambda p: torch.optim.Adam(p, lr=2e-2, fused=True))
    rng = np.random.default_rng(0)
    for _ in range(40):
        x, target = rng.normal(size=3), rng.normal(size=1)
        got = tiny.push(x, target).copy()
        want = ref.push(torch.from_numpy(x), torch.from_numpy(target)).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    _assert_same(tiny, ref)


@pytest.mark.parametrize("rows, resets", [
    # pre-activations of +-1e300: the gates saturate, the state stays finite (as torch)
    ([[1e300, 0.5], [1e300, -1e300], [0.5, -1e300]], 0),
    # inf - inf (steps whose inputs have one sign): the state is NaN and the stream is
    # reset to step 0, in both; inf + inf saturates
    ([[1.0, 0.5], [np.inf, -np.inf], [0.5, 1.0]], 3),
])
def test_saturation_and_non_finite_states_as_torch(rows, resets):
    model = _model("rnn", 2, 3, 1, 0)
    with torch.no_grad():
        model.cell.rnn.weight_ih_l0[:] = torch.tensor(rows, dtype=torch.float64)
    tiny = TinyLearner(model, k1=2, k2=4, lr=1e-2, clip=1.0, horizon=1)
    ref = OnlineLearner(model, k1=2, k2=4, clip=1.0, horizon=1, horizon_column=0,
                        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2, fused=True))
    for x in ([1.0, 0.5], [0.5, -0.5], [-1.0, 1.0], [0.1, 0.2], [0.3, 0.1]):
        x = np.array(x)
        np.testing.assert_allclose(tiny.push(x), ref.push(torch.from_numpy(x)).numpy(),
                                   rtol=0, atol=TOL)
    assert tiny.counts["nonfinite_resets"] == ref.counts["nonfinite_resets"] == resets
    _assert_same(tiny, ref)


# -- the estimators with either engine ------------------------------------------------

@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(sorted(CELLS)), seed=st.integers(0, 1000),
       window=windows, features=st.integers(0, 3))
def test_forecaster_engines_agree(cell, seed, window, features):
    k1, k2 = window
    rng = np.random.default_rng(seed)
    ys = np.cumsum(rng.normal(size=60)) + 50
    xs = [{f"f{i}": float(rng.normal()) for i in range(features)} for _ in range(64)]
    models = [RNNForecaster(hidden_size=6, cell=cell, k1=k1, k2=k2, seed=seed, engine=e)
              for e in ("numba", "torch")]
    for t, y in enumerate(ys):
        for m in models:
            m.learn_one(float(y), xs[t])
        a, b = (m.forecast(3, xs=xs[t + 1:t + 4]) for m in models)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    wa, wb = (m._weights() for m in models)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=TOL)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_regressor_and_classifier_engines_agree(cls):
    rng = np.random.default_rng(0)
    data = [({"a": float(rng.normal()), "b": float(rng.normal())}, int(rng.integers(3)))
            for _ in range(80)]
    if cls is RNNRegressor:
        data = [(x, float(y) + x["a"]) for x, y in data]
    models = [cls(hidden_size=6, seed=3, engine=e) for e in ("numba", "torch")]
    for x, y in data:
        if cls is RNNRegressor:
            a, b = (m.predict_one(x) for m in models)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        else:
            pa, pb = (m.predict_proba_one(x) for m in models)
            assert pa.keys() == pb.keys()
            assert all(math.isclose(pa[c], pb[c], abs_tol=1e-9) for c in pa)
        for m in models:
            m.learn_one(x, y)
    wa, wb = (m._weights() for m in models)
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=TOL)


def test_wrong_shapes_and_targets_are_named():
    tiny, _ = _pair("rnn", 3, 4, 2, 0, 1, 2)
    with pytest.raises(ValueError, match=r"x must be a contiguous float64 array of shape \(3,\)"):
        tiny.push(np.zeros(4))
    with pytest.raises(ValueError, match="x must be"):
        tiny.push(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="target must hold 2 values"):
        tiny.push(np.zeros(3), [1.0, 2.0, 3.0])
    classes = TinyLearner(_model("rnn", 3, 4, 2, 0), k1=1, k2=2, lr=1e-2,
                          target_kind="classes")
    with pytest.raises(ValueError, match=r"class index in \[0, 2\)"):
        classes.push(np.zeros(3), 2)


def test_without_numba_auto_falls_back_to_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from streamrnn.river import RNNForecaster\n"
        "m = RNNForecaster(seed=0, hidden_size=4)\n"
        "for y in range(12): m.learn_one(float(y), {'a': float(y % 3)})\n"
        "assert not m._compiled and len(m.forecast(2, [{'a': 1.0}, {'a': 2.0}])) == 2\n"
        "try:\n"
        "    RNNForecaster(engine='numba')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "engine='numba' needs the numba package" in out.stdout
