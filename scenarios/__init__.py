"""The fault-scenario runner: the same fault timelines against the naive and the seawall service.

``python -m scenarios [--quick] [--out report.html] [--only NAME]``; see :mod:`scenarios.cli`.
"""
