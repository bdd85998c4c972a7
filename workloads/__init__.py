"""Workloads: model shapes, precisions, batches and the step graph of operators."""

from workloads.batch import Batch, Routing
from workloads.builder import build_step_graph
from workloads.catalog import list_models, load_model
from workloads.errors import ArgumentError, DecodexError, InfeasibleError, SpecError
from workloads.graph import Graph, LayerTemplate
from workloads.model_config import ModelConfig, load_model_config, model_from_dict
from workloads.ops import AttentionOp, CollectiveOp, ElementwiseOp, EmbeddingOp, MatmulOp, MoEExpertsOp, Op, OpKind
from workloads.parallelism import Parallelism
from workloads.precision import DType, Precision, Sparsity

__all__ = [
    "ArgumentError", "AttentionOp", "Batch", "CollectiveOp", "DType", "DecodexError", "ElementwiseOp",
    "EmbeddingOp", "Graph", "InfeasibleError", "LayerTemplate", "MatmulOp", "MoEExpertsOp", "ModelConfig",
    "Op", "OpKind", "Parallelism", "Precision", "Routing", "Sparsity", "SpecError", "build_step_graph",
    "list_models", "load_model", "load_model_config", "model_from_dict",
]
