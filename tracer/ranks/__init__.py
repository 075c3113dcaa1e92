"""Distributed runs (issue 15): one trace per rank under one run directory, their merge
into the global view, and the checks that need every rank at once.

- :mod:`tracer.ranks.files`: ``RUN/rank=N/`` (Hive partitioning), saving and loading.
- :mod:`tracer.ranks.merge`: :func:`merge_ranks`, the job as one trace (global batches).
- :mod:`tracer.ranks.check`: :func:`check_ranks`, every rank, the merged job and the cross-rank
  diagnoses (:mod:`tracer.checker.diagnoses.ranks`).
"""
from .files import dataset, is_rank_run, load_ranks, rank_dir, rank_dirs, save_rank

__all__ = ["dataset", "is_rank_run", "load_ranks", "rank_dir", "rank_dirs", "save_rank"]
