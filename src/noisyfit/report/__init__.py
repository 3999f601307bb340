"""Audit report: a self-contained HTML page (``html.py``) with matplotlib figures (``plots.py``)."""

from noisyfit.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
