"""The flattened torch forward is the module's forward, bit for bit, or is refused; the numpy
forward is the module's to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from api.serving.torch_kernel import compile_module, near_tie, numpy_forward
from experiments.torch_models import DigitsCNN, TabularMLP


def _fitted_mlp(hidden: int, layers: int, outputs: int, seed: int) -> TabularMLP:
    """An eval-mode MLP over 12 features, its normalisation fitted to random data."""
    torch.manual_seed(seed)
    module = TabularMLP(12, outputs, hidden=hidden, layers=layers)
    module.norm.fit(torch.randn(200, 12) * 3 + 1)
    return module.eval()


@pytest.mark.parametrize("hidden, layers, outputs", [(16, 1, 2), (64, 2, 2), (32, 3, 5)])
def test_flat_forward_equals_the_module(hidden: int, layers: int, outputs: int) -> None:
    module = _fitted_mlp(hidden, layers, outputs, seed=hidden + layers)
    flat = compile_module(module)
    assert flat is not None
    with torch.inference_mode():
        for rows in (1, 7, 64):
            x = torch.randn(rows, 12) * 4
            assert torch.equal(flat(x), module(x))


def test_what_it_cannot_copy_keeps_the_module() -> None:
    mlp = TabularMLP(4, 2)
    assert compile_module(mlp) is None  # training mode: dropout is live
    assert compile_module(DigitsCNN(64, 10).eval()) is None  # reshapes in its own forward
    assert compile_module(nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True)).eval()) is None
    assert compile_module(nn.Sequential(nn.Linear(4, 4), nn.Tanh()).eval()) is None
    chain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).eval()
    chain[2].train()  # Monte Carlo dropout: a live dropout inside an eval-mode model
    assert compile_module(chain) is None
    chain.eval()
    handle = chain[0].register_forward_hook(lambda *_: None)
    assert compile_module(chain) is None
    handle.remove()
    flat = compile_module(chain)
    assert flat is not None
    x = torch.randn(5, 4)
    with torch.inference_mode():
        assert torch.equal(flat(x), chain(x))


def test_the_flat_forward_follows_the_module_after_compiling() -> None:
    module = TabularMLP(6, 2, hidden=8, layers=1).eval()
    flat = compile_module(module)
    assert flat is not None
    module.norm.fit(torch.randn(50, 6) + 3)  # new statistics, in place
    module.load_state_dict({k: torch.randn_like(v) for k, v in module.state_dict().items()})
    module.to(torch.float64)  # replaces the buffers, converts the parameters
    x = torch.randn(4, 6, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(flat(x), module(x))


@pytest.mark.parametrize("hidden, layers, outputs", [(16, 1, 2), (64, 2, 2), (32, 3, 5)])
def test_the_numpy_forward_is_the_module_to_float32_rounding(hidden: int, layers: int,
                                                              outputs: int) -> None:
    module = _fitted_mlp(hidden, layers, outputs, seed=hidden * layers)
    forward = numpy_forward(module)
    assert forward is not None
    with torch.inference_mode():
        for rows in (1, 7, 64):
            x = torch.randn(rows, 12) * 4
            got, want = forward(x.numpy()), module(x).numpy()
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    x = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    copy = x.copy()
    forward(x)
    assert np.array_equal(x, copy)  # the caller's rows are left as they were


def test_the_numpy_forward_is_only_for_float32_chains_on_the_cpu() -> None:
    assert numpy_forward(TabularMLP(4, 2)) is None  # training mode
    assert numpy_forward(DigitsCNN(64, 10).eval()) is None
    assert numpy_forward(TabularMLP(4, 2).eval().to(torch.float64)) is None
    chain = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3)).eval()
    forward = numpy_forward(chain)
    assert forward is not None
    x = torch.randn(5, 4)
    with torch.inference_mode():
        np.testing.assert_allclose(forward(x.numpy()), chain(x).numpy(), rtol=1e-5, atol=1e-6)


def test_near_ties_are_found() -> None:
    assert near_tie(np.array([[1.0, 1.00001]], np.float32))
    assert not near_tie(np.array([[1.0, 2.0]], np.float32))
    assert near_tie(np.array([[3.0, np.nan, 1.0]], np.float32))
    assert not near_tie(np.array([[7.0]], np.float32))  # one output: nothing to swap
    assert near_tie(np.array([[1.0, 2.0, 3.0], [5.0, 1.0, 5.00001]], np.float32))
    assert not near_tie(np.array([[1.0, 2.0, 3.0], [5.0, 1.0, 6.0]], np.float32))
    assert near_tie(np.array([[1.0, 2.0], [np.nan, 1.0]], np.float32))
