"""A torch module flattened into the ATen calls its forward makes, for row-sized requests.

On one row, calling an ``nn.Module`` tree costs more than its arithmetic: the MLP of
``experiments/`` is ten module calls (hooks, ``__call__`` dispatch) around six kernels,
26 us against 9 us for the kernels alone. :func:`compile_module` turns an eval-mode module
built only of ``Normalize``, ``Linear``, ``ReLU``, ``Dropout`` and ``Sequential`` (the
``TabularMLP`` of ``experiments/``, or such a chain) into a list of those same calls, in the
same order and on the same tensors, so the output is bit-for-bit the module's
(``tests/serving`` compares them on random batches). Anything else (another layer, a
submodule in training mode, a module with hooks) returns None and keeps the module. Global
module hooks registered after compiling are not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from experiments.torch_models import Normalize, TabularMLP

Step = Callable[[torch.Tensor], torch.Tensor]
NumpyStep = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")


def compile_module(module: nn.Module) -> Step | None:
    """The module's forward as a flat list of kernel calls, or None if it has other parts."""
    for part in module.modules():
        if part.training:
            return None  # a live dropout: only modules wholly in eval mode are flattened
        if part._forward_hooks or part._forward_pre_hooks:
            return None  # hooks would be skipped
    steps = _flatten(module, _torch_step)
    return None if steps is None else _chain(steps)


def numpy_forward(module: nn.Module) -> NumpyStep | None:
    """The same chain in numpy, for float32 modules on the CPU; None where
    :func:`compile_module` refuses, or for another dtype or device.

    On one row, torch's per-operator dispatch costs more than the arithmetic: the MLP of
    ``experiments/`` takes 20 us through the flat kernel calls and 7 us in numpy, and far
    more under load, on caches the rest of the request has just filled. The outputs are
    not torch's bits: a matrix product sums in another order (torch's own results already
    change in the last bits with the batch a row is in). The caller keeps labels exact
    (:func:`near_tie`). Weights are views of the module's tensors: an in-place update is
    followed, a ``.to()`` that replaces them is not (serving never changes a loaded module).
    """
    if compile_module(module) is None:
        return None
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    steps = _flatten(module, _numpy_step)
    return None if steps is None else _chain(steps)


def _chain(steps: list[Callable[[T], T]]) -> Callable[[T], T]:
    def forward(x: T) -> T:
        for step in steps:
            x = step(x)
        return x

    return forward


def _flatten(module: nn.Module, leaf: Callable[[nn.Module], list[T] | None]
             ) -> list[T] | None:
    """The steps of a TabularMLP or Sequential in call order, each leaf's from ``leaf``;
    None if any part has none."""
    kind = type(module)
    if isinstance(module, TabularMLP) and kind is TabularMLP:
        parts: list[nn.Module] = [module.norm, module.net]  # its forward: net(norm(x))
    elif isinstance(module, nn.Sequential) and kind is nn.Sequential:
        parts = list(module)
    else:
        return leaf(module)
    out: list[T] = []
    for part in parts:
        steps = _flatten(part, leaf)
        if steps is None:
            return None
        out += steps
    return out


def _torch_step(module: nn.Module) -> list[Step] | None:
    kind = type(module)
    # Tensors are read from the module's own dicts at each call, so a later `.to()` (which
    # replaces buffers) or `load_state_dict` is followed.
    if kind is Normalize:
        buffers = module._buffers
        return [lambda x: (x - buffers["mean"]) / buffers["std"]]
    if kind is nn.Linear:
        params = module._parameters
        linear = torch._C._nn.linear  # what nn.functional.linear is
        return [lambda x: linear(x, params["weight"], params["bias"])]  # type: ignore[arg-type]
    if kind is nn.ReLU and not module.inplace:
        return [torch.relu]
    if kind is nn.Dropout:
        return []  # the identity in eval mode
    return None


def _numpy_step(module: nn.Module) -> list[NumpyStep] | None:
    kind = type(module)
    if isinstance(module, Normalize) and kind is Normalize:
        mean, std = module.mean.detach().numpy(), module.std.detach().numpy()
        return [lambda x: (x - mean) / std]  # elementwise: the same bits as torch
    if isinstance(module, nn.Linear) and kind is nn.Linear:
        weight_t = module.weight.detach().numpy().T  # a view; BLAS reads it transposed
        bias = module.bias.detach().numpy() if module.bias is not None else None

        def linear(x: np.ndarray) -> np.ndarray:
            y = x @ weight_t
            if bias is not None:
                y += bias
            return y

        return [linear]
    if kind is nn.ReLU:  # not in place: compile_module refused that already
        return [lambda x: np.maximum(x, np.float32(0))]
    if kind is nn.Dropout:
        return []
    return None


def near_tie(logits: np.ndarray, tolerance: float = 1e-4) -> bool:
    """True if some row's two largest outputs are so close that another summation order
    could swap them (then the caller recomputes with torch, so labels stay pyfunc's)."""
    if logits.shape[1] < 2:
        return False
    if len(logits) == 1:  # one row: Python on a few floats beats four array calls
        row = logits[0].tolist()
        if any(v != v for v in row):
            return True  # NaN: let torch decide, as pyfunc would
        *_, second, top = sorted(row)
        return not top - second > tolerance * max(1.0, abs(top))
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    scale = np.maximum(1.0, np.abs(top2[:, 1]))
    return bool(np.any(~(margin > tolerance * scale)))  # NaN counts as a tie
