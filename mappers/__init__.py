"""Mappers: how a system places and schedules a step graph (policy, not mechanism)."""

from mappers.base import MAPPERS, Mapper, Placement, Plan, get_mapper, register_mapper
from mappers.gpu import GpuMapper, choose_unit

__all__ = ["MAPPERS", "GpuMapper", "Mapper", "Placement", "Plan", "choose_unit", "get_mapper", "register_mapper"]
