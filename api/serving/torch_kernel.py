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

import torch
from torch import nn

from experiments.torch_models import Normalize, TabularMLP

Step = Callable[[torch.Tensor], torch.Tensor]


def compile_module(module: nn.Module) -> Step | None:
    """The module's forward as a flat list of kernel calls, or None if it has other parts."""
    for part in module.modules():
        if part.training:
            return None  # a live dropout: only modules wholly in eval mode are flattened
        if part._forward_hooks or part._forward_pre_hooks:
            return None  # hooks would be skipped
    steps = _steps(module)
    if steps is None:
        return None

    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


def _steps(module: nn.Module) -> list[Step] | None:
    kind = type(module)
    if isinstance(module, TabularMLP) and kind is TabularMLP:
        norm, net = _steps(module.norm), _steps(module.net)  # its forward: net(norm(x))
        return None if norm is None or net is None else norm + net
    if isinstance(module, nn.Sequential) and kind is nn.Sequential:
        out: list[Step] = []
        for child in module:
            steps = _steps(child)
            if steps is None:
                return None
            out += steps
        return out
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
