"""Explaining image files (`salmap explain`): plan the run, explain the images in batches, write
each image's maps while the next batches run, and record what was done."""

from .plan import Plan, plan_run
from .records import MapRecord
from .run import ExplainReport, explain_files

__all__ = ["ExplainReport", "MapRecord", "Plan", "explain_files", "plan_run"]
