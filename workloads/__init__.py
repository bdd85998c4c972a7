"""Workloads: model shapes, precisions, batches and the step graph of operators."""

from decodex.core.dtypes import DType
from decodex.core.errors import ArgumentError, DecodexError, InfeasibleError, SpecError
from decodex.workloads.batch import Batch, Routing
from decodex.workloads.builder import build_step_graph
from decodex.workloads.catalog import list_models, load_model
from decodex.workloads.graph import Graph, LayerTemplate
from decodex.workloads.hf_config import load_model_config, model_from_dict
from decodex.workloads.model_config import ModelConfig
from decodex.workloads.ops import (
    AttentionOp,
    CollectiveOp,
    ElementwiseOp,
    EmbeddingOp,
    MatmulOp,
    MoEExpertsOp,
    Op,
    OpKind,
)
from decodex.workloads.parallelism import Parallelism
from decodex.workloads.precision import Precision, Sparsity

__all__ = [
    "ArgumentError", "AttentionOp", "Batch", "CollectiveOp", "DType", "DecodexError", "ElementwiseOp",
    "EmbeddingOp", "Graph", "InfeasibleError", "LayerTemplate", "MatmulOp", "MoEExpertsOp", "ModelConfig",
    "Op", "OpKind", "Parallelism", "Precision", "Routing", "Sparsity", "SpecError", "build_step_graph",
    "list_models", "load_model", "load_model_config", "model_from_dict",
]
