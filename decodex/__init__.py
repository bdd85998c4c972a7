"""Decodex: a hardware simulator and co-design explorer for LLM decoding.

``import decodex as dx`` gives the public API; each name is imported on first use, so
``import decodex`` is quick and pulls in neither the dashboard nor the sweep machinery.

Running a design point (times in s, energy in J, memory in B):

======================  =====================================================================
``estimate``            analytical estimate of one step (roofline per op), with the error band
                        of the validation records (:mod:`decodex.api`)
``simulate``            discrete-event simulation of one step (overlap, contention), with band
``serve``               request-level serving over many steps: TTFT, TPOT, goodput
``sweep``               a design space (TOML, dict or SweepSpace) as one row per point
``plan_step``           build the graph and map it onto the system (a :class:`Plan`)
``evaluate``            price a plan analytically (no band attached)
``reproduce``           run the seed papers' reproduction targets (``"all"``, a group or a name)
``pareto_front``        the non-dominated rows of a sweep's frame
``estimate_speculative`` one speculative step: draft, verify, tokens per step, speedup
                        (``Draft``, ``ChainAcceptance``/``TreeAcceptance``/``EmpiricalAcceptance``,
                        ``TokenTree``; :mod:`decodex.sim.speculative`)
======================  =====================================================================

Inputs:

======================  =====================================================================
``load_model``          a model: catalog name, HF ``config.json`` path or ModelConfig
``list_models``         the catalog's model names
``load_system``         a system: catalog name, TOML path or SystemSpec
``list_systems``        the catalog's system names; ``list_devices``: its device names
``load_device``         one device TOML file
``Batch``               the requests of one step (context lengths, query tokens, routing)
``Routing``             how MoE tokens choose experts
``Parallelism``         tensor / pipeline / expert / data parallel degrees
``Precision``           weight, activation and KV formats (``bf16``, ``fp8``, ``w4a16`` ...)
``DType``, ``Sparsity`` an element format; N:M weight sparsity
``Workload``            serving requests: arrivals and prompt/output lengths
``list_examples``       the example sweep spaces shipped with Decodex; ``copy_example`` copies one
======================  =====================================================================

Results and errors: ``StepResult``, ``SimResult``, ``ServingResult``, ``ModelConfig``,
``SystemSpec``, ``DeviceSpec``; every input error is a ``DecodexError`` (``SpecError`` for a bad
file field, ``ArgumentError`` for a bad argument, ``InfeasibleError`` for a point that cannot
run). The sub-packages (``decodex.workloads``, ``decodex.hw_models``, ``decodex.mappers``,
``decodex.sim``, ``decodex.validation``, ``decodex.explore``, ``decodex.app``) hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from decodex._version import __version__
from decodex.core.lazy_exports import lazy_exports

# public name -> module that defines it (imported on first access, PEP 562)
_EXPORTS: dict[str, str] = {
    "estimate": "decodex.api",
    "simulate": "decodex.api",
    "serve": "decodex.sim.serving.api",
    "sweep": "decodex.sim",
    "plan_step": "decodex.sim.estimate",
    "evaluate": "decodex.sim.estimate",
    "reproduce": "decodex.validation.reproduce",
    "pareto_front": "decodex.explore.pareto",
    "estimate_speculative": "decodex.sim.speculative",
    "Draft": "decodex.sim.speculative",
    "ChainAcceptance": "decodex.workloads.acceptance",
    "TreeAcceptance": "decodex.workloads.acceptance",
    "EmpiricalAcceptance": "decodex.workloads.acceptance",
    "TokenTree": "decodex.workloads.token_tree",
    "load_model": "decodex.workloads.catalog",
    "list_models": "decodex.workloads.catalog",
    "load_system": "decodex.hw_models.system",
    "list_systems": "decodex.hw_models.system",
    "list_devices": "decodex.hw_models.system",
    "load_device": "decodex.hw_models.device",
    "Batch": "decodex.workloads.batch",
    "Routing": "decodex.workloads.batch",
    "Parallelism": "decodex.workloads.parallelism",
    "Precision": "decodex.workloads.precision",
    "Sparsity": "decodex.workloads.precision",
    "DType": "decodex.core.dtypes",
    "Workload": "decodex.sim.serving.workload",
    "list_examples": "decodex.examples",
    "copy_example": "decodex.examples",
    "ModelConfig": "decodex.workloads.model_config",
    "SystemSpec": "decodex.hw_models.system",
    "DeviceSpec": "decodex.hw_models.device",
    "StepResult": "decodex.sim.results",
    "SimResult": "decodex.sim.simulate",
    "ServingResult": "decodex.sim.serving.result",
    "DecodexError": "decodex.core.errors",
    "SpecError": "decodex.core.errors",
    "ArgumentError": "decodex.core.errors",
    "InfeasibleError": "decodex.core.errors",
}

__all__ = [
    "ArgumentError",
    "Batch",
    "ChainAcceptance",
    "DType",
    "DecodexError",
    "DeviceSpec",
    "Draft",
    "EmpiricalAcceptance",
    "InfeasibleError",
    "ModelConfig",
    "Parallelism",
    "Precision",
    "Routing",
    "ServingResult",
    "SimResult",
    "Sparsity",
    "SpecError",
    "StepResult",
    "SystemSpec",
    "TokenTree",
    "TreeAcceptance",
    "Workload",
    "__version__",
    "copy_example",
    "estimate",
    "estimate_speculative",
    "evaluate",
    "list_devices",
    "list_examples",
    "list_models",
    "list_systems",
    "load_device",
    "load_model",
    "load_system",
    "pareto_front",
    "plan_step",
    "reproduce",
    "serve",
    "simulate",
    "sweep",
]


__getattr__, __dir__ = lazy_exports("decodex", _EXPORTS, globals())


if TYPE_CHECKING:  # what static checkers and IDEs see
    from decodex.api import estimate, simulate
    from decodex.core.dtypes import DType
    from decodex.core.errors import ArgumentError, DecodexError, InfeasibleError, SpecError
    from decodex.examples import copy_example, list_examples
    from decodex.explore.pareto import pareto_front
    from decodex.hw_models.device import DeviceSpec, load_device
    from decodex.hw_models.system import SystemSpec, list_devices, list_systems, load_system
    from decodex.sim import sweep
    from decodex.sim.estimate import evaluate, plan_step
    from decodex.sim.results import StepResult
    from decodex.sim.serving.api import serve
    from decodex.sim.serving.result import ServingResult
    from decodex.sim.serving.workload import Workload
    from decodex.sim.simulate import SimResult
    from decodex.validation.reproduce import reproduce
    from decodex.workloads.batch import Batch, Routing
    from decodex.workloads.catalog import list_models, load_model
    from decodex.workloads.model_config import ModelConfig
    from decodex.workloads.parallelism import Parallelism
    from decodex.workloads.precision import Precision, Sparsity
