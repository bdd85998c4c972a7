"""Mappers: how a system places and schedules a step graph (policy, not mechanism)."""

from decodex.mappers.afd import AfdMapper
from decodex.mappers.base import MAPPERS, Mapper, Placement, Plan, get_mapper, register_mapper
from decodex.mappers.duplex import DuplexMapper
from decodex.mappers.flightllm import FlightLlmMapper
from decodex.mappers.gpu import GpuMapper, choose_unit
from decodex.mappers.neupims import NeuPimsMapper

__all__ = ["MAPPERS", "AfdMapper", "DuplexMapper", "FlightLlmMapper", "GpuMapper", "Mapper", "NeuPimsMapper",
           "Placement", "Plan", "choose_unit", "get_mapper", "register_mapper"]
