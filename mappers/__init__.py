"""Mappers: how a system places and schedules a step graph (policy, not mechanism)."""

from mappers.afd import AfdMapper
from mappers.base import MAPPERS, Mapper, Placement, Plan, get_mapper, register_mapper
from mappers.duplex import DuplexMapper
from mappers.flightllm import FlightLlmMapper
from mappers.gpu import GpuMapper, choose_unit
from mappers.neupims import NeuPimsMapper

__all__ = ["MAPPERS", "AfdMapper", "DuplexMapper", "FlightLlmMapper", "GpuMapper", "Mapper", "NeuPimsMapper",
           "Placement", "Plan", "choose_unit", "get_mapper", "register_mapper"]
