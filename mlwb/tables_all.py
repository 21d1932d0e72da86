"""Imports every module that registers lake tables, so the ingest and readers know them all.

Append-only: one import per module that calls ``mlwb.tables.register``.
"""

import mlwb.predictions
import mlwb.tables  # noqa: F401  (events, audit, job_events, dead_letters)
