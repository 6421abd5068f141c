"""The end-to-end harness; it lives in :mod:`relisten.stack` so that the benchmark can use it too."""

from relisten.stack import ServiceProcess, Stack, process_cpu_seconds

__all__ = ["ServiceProcess", "Stack", "process_cpu_seconds"]
