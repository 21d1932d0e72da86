"""The experiment registry: a name, a typed config and a fit function.

Add your own in one file: put a module in ``experiments/custom/`` that builds an
:class:`Experiment` and calls :func:`register` (see ``experiments/custom/example.py``);
every module there is imported when the registry is first read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from experiments.config import ExperimentConfig
from mlwb.errors import NotFound, Unprocessable

EpochHook = Callable[[dict[str, float]], None]


@dataclass
class FitContext:
    """What a fit function may use besides its config and data."""

    on_epoch: EpochHook | None = None


@dataclass
class Fitted:
    """A trained model and how it was trained.

    ``kind`` is ``sklearn`` (``model`` is a Pipeline holding its preprocessing) or ``torch``
    (``model`` is an nn.Module carrying its normalisation; ``arch``/``kwargs`` rebuild it).
    """

    kind: str
    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    arch: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment."""

    name: str
    config: type[ExperimentConfig]
    fit: Callable[..., Fitted]
    task: str  # classification | regression
    data: str  # built-in data set used when the config names none
    framework: str  # torch | sklearn
    description: str = ""

    @property
    def uses_gpu(self) -> bool:
        """Torch experiments may use a GPU; scikit-learn ones never do."""
        return self.framework == "torch"


_REGISTRY: dict[str, Experiment] = {}
_loaded = False


def register(exp: Experiment) -> Experiment:
    """Add an experiment (a second one with the same name is an error)."""
    if exp.name in _REGISTRY and _REGISTRY[exp.name] is not exp:
        raise ValueError(f"experiment {exp.name!r} is already registered")
    _REGISTRY[exp.name] = exp
    return exp


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("experiments.builtin")
    custom = importlib.import_module("experiments.custom")
    for info in pkgutil.iter_modules(custom.__path__):
        importlib.import_module(f"experiments.custom.{info.name}")


def all_experiments() -> list[Experiment]:
    """Every registered experiment, by name."""
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(name: str) -> Experiment:
    """The experiment called ``name``; NotFound lists the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFound(f"no experiment named {name!r}; known: {', '.join(sorted(_REGISTRY))} "
                       "(see `wb experiments list`)", experiment=name) from None


def validate(name: str, params: dict[str, Any]) -> ExperimentConfig:
    """A frozen config from user params; Unprocessable names the first bad field."""
    exp = get(name)
    if not isinstance(params, dict):
        raise Unprocessable("params must be an object of name: value", experiment=name)
    try:
        return exp.config(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        fld = ".".join(str(p) for p in err["loc"]) or "params"
        if err["type"] == "extra_forbidden":
            msg = (f"{fld} is not a parameter of {name}; its parameters are "
                   f"{', '.join(exp.config.model_fields)}")
        else:
            msg = f"{fld}: {err['msg']} (got {err.get('input')!r})"
        raise Unprocessable(f"bad parameter for {name}: {msg}", field=fld,
                            experiment=name) from None


def describe(name: str) -> list[dict[str, Any]]:
    """Each parameter: name, type, default, range, description."""
    exp = get(name)
    rows = []
    for pname, f in exp.config.model_fields.items():
        lo = hi = None
        for m in f.metadata:
            lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else (
                getattr(m, "gt", None) if getattr(m, "gt", None) is not None else lo)
            hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else (
                getattr(m, "lt", None) if getattr(m, "lt", None) is not None else hi)
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        rows.append({
            "name": pname,
            "type": getattr(f.annotation, "__name__", None) or str(f.annotation),
            "default": f.default,
            "min": lo,
            "max": hi,
            "log": bool(extra.get("log")),
            "description": f.description or "",
        })
    return rows
