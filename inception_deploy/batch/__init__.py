"""Offline batch jobs on Ray: ``session`` (join or start Ray for a job, the actor pool), ``jobs``
(classify, evaluate), ``writers`` (JSON Lines and Parquet outputs, resumable)."""

from .jobs import BatchReport, classify_on_ray, on_ray
from .session import RayOptions, require_ray
from .writers import check_output

__all__ = ["BatchReport", "RayOptions", "check_output", "classify_on_ray", "on_ray", "require_ray"]
