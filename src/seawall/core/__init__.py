"""The sans-IO core: policy state that never awaits, sleeps, or starts a thread.

Drivers (:mod:`seawall.breaker`, :mod:`seawall.retry`, ...) wrap these classes
with ``with`` / ``async with`` / decorators; all decisions are made here once.
"""
