"""Anatomy of a model: per-layer shapes, parameters, MACs, FLOPs, receptive fields, memory."""

from .record import FieldAxis, LayerRow, Totals, Uncounted
from .summary import Summary, summary

__all__ = ["FieldAxis", "LayerRow", "Summary", "Totals", "Uncounted", "summary"]
