"""Exports of a model to other tools: :func:`export_xlsx` writes the CNN as a live spreadsheet.

Importing this package does not import openpyxl; writing a workbook does.
"""

from .xlsx import XlsxExport, export_xlsx

__all__ = ["XlsxExport", "export_xlsx"]
