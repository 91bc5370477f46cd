"""The ids the service hands out."""

from __future__ import annotations

# Study and trial ids are INTEGER columns (Optuna's and ours): 32 bits on PostgreSQL, where a
# larger id is a DataError (which the API would answer 503), 64 bits on SQLite (an OverflowError).
MAX_ID = 2**31 - 1
