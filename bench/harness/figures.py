"""Units and the arithmetic of results: medians of paired ratios, nearest-rank percentiles."""

from __future__ import annotations

MIB = 1024 * 1024
