"""Anatomy of a model: per-layer shapes, parameters, MACs, FLOPs, receptive fields, memory."""

from .erf import EffectiveField, effective_receptive_field
from .memory import LayerMemory, TrainingMemory, training_memory
from .record import FieldAxis, LayerRow, Totals, Uncounted
from .summary import Summary, summary

__all__ = ["EffectiveField", "FieldAxis", "LayerMemory", "LayerRow", "Summary", "Totals", "TrainingMemory",
           "Uncounted", "effective_receptive_field", "summary", "training_memory"]
