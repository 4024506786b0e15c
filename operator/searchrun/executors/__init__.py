"""Executors carry the engine's decisions out: ``local`` (subprocesses) and ``kube`` (Jobs).

The contract both keep (a step's context, reading its committed result, the lineage) is
in ``base``; it is re-exported here.
"""

from .base import (MALFORMED, CommittedResult, MalformedResult, committed_observation, lineage_document,
                   lineage_key, lineage_needed, parse_result, put_lineage, read_committed, step_context)

__all__ = ["MALFORMED", "CommittedResult", "MalformedResult", "committed_observation", "lineage_document",
           "lineage_key", "lineage_needed", "parse_result", "put_lineage", "read_committed", "step_context"]
