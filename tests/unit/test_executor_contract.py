"""The executor contract (executors/base.py): one reader of a step's committed result.json for
both executors, the lineage write, and "lineage before the report"."""

from __future__ import annotations

import io
import json
import sys
import textwrap

import pytest

from searchrun.api import SearchRun
from searchrun.artifacts import open_store, result_key
from searchrun.cli_run import ProgressPrinter
from searchrun.engine import Event, Observation, StartStep, StepResult
from searchrun.executors import (MALFORMED, MalformedResult, committed_observation, lineage_needed, parse_result,
                                 read_committed)
from searchrun.executors.kube.jobs import observe_job
from searchrun.executors.local import LocalExecutor, Progress, failure_reason


# ------------------------------------------------------------------ the parser


def test_a_well_formed_result_parses_from_bytes_text_or_json():
    want = StepResult(tokens=5, found=True, next=("a", "b"), costUSD=0.5)
    doc = {"tokens": 5, "found": True, "next": ["a", "b"], "costUSD": 0.5}
    assert parse_result(json.dumps(doc).encode()) == want
    assert parse_result(json.dumps(doc)) == want
    assert parse_result(doc) == want


def test_a_missing_result_is_malformed():
    with pytest.raises(MalformedResult, match="the step's result.json is missing"):
        parse_result(None)


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"tokens": 5', b"\xff\xfe\x00garbage", "tokens=5"])
def test_a_result_that_is_not_json_is_malformed(raw):
    with pytest.raises(MalformedResult, match="the step's result.json is not valid JSON"):
        parse_result(raw)


@pytest.mark.parametrize("raw,field", [
    (b"[1, 2]", "JSON object"),
    (b'"done"', "JSON object"),
    (b"null", "JSON object"),
    (b'{"tokens": "lots"}', "'tokens'"),
    (b'{"tokens": -1}', "'tokens'"),
    (b'{"tokens": true}', "'tokens'"),
    (b'{"costUSD": "free"}', "'costUSD'"),
    (b'{"found": "yes"}', "'found'"),
    (b'{"intent": "maybe"}', "'intent'"),
    (b'{"next": [1]}', "'next'"),
    (b'{"seeds": "d1"}', "'seeds'"),
    (b'{"output": 7}', "'output'"),
])
def test_a_result_with_a_wrong_field_type_is_malformed_naming_the_field(raw, field):
    with pytest.raises(MalformedResult) as e:
        parse_result(raw)
    assert field in str(e.value)


def test_one_message_for_a_malformed_result_in_both_executors():
    o = committed_observation("t0", 2, b'{"tokens": "lots"}', final=True, attempts=3)
    assert o.state == "failed" and o.final and o.attempts == 3 and o.result is None
    assert o.message.startswith(f"{MALFORMED}: ") and "'tokens'" in o.message
    job = {"metadata": {"labels": {"searchrun.dev/step-id": "t0"}, "annotations": {"searchrun.dev/attempt": "2"}},
           "status": {"conditions": [{"type": "Complete", "status": "True"}], "failed": 2}}
    assert observe_job(job, b'{"tokens": "lots"}') == o
    ok = committed_observation("t0", 1, b'{"tokens": 5}', message="earlier pod: OOMKilled")
    assert ok == Observation("t0", 1, "succeeded", result=StepResult(tokens=5), message="earlier pod: OOMKilled")


def test_read_committed_reads_the_attempts_result_json(tmp_path):
    store = open_store(f"file://{tmp_path}")
    assert read_committed(store, "0123456789abcdef", "t0", 1) is None
    store.put_bytes(result_key("0123456789abcdef", "t0", 1), b'{"tokens": 3}')
    assert read_committed(store, "0123456789abcdef", "t0", 1) == b'{"tokens": 3}'
    assert read_committed(store, "0123456789abcdef", "t0", 2) is None


def _start(step_id: str, needs_lineage: bool = False) -> StartStep:
    return StartStep(step_id, "create_report" if needs_lineage else "traverse_node", 1, f"job-{step_id}", {},
                     60, 0, needs_lineage=needs_lineage)


def test_lineage_is_needed_when_a_step_reads_it():
    assert not lineage_needed([])
    assert not lineage_needed([_start("t0"), _start("t1")])
    assert lineage_needed([_start("t0"), _start("report", needs_lineage=True)])


def test_failure_reason_is_the_steps_error_line():
    assert failure_reason("warning: x\nstep failed: CorpusError: bad\n", 1) == "CorpusError: bad"
    assert failure_reason("step failed: old\nstep failed: StepError: 2 errors\n  corpus.uri: bad\n", 1) == \
        "StepError: 2 errors\n  corpus.uri: bad"
    assert failure_reason("Traceback ...\nKilled\n", -9) == "Killed"
    assert failure_reason("", 137) == "exit code 137"


# ------------------------------------------------------------------ the local executor reads the store

# A stand-in for ``searchrun step``: it does what its mode says with the step's result.json.
FAKE_STEP = textwrap.dedent("""
    import os, sys
    from searchrun.artifacts import open_store, result_key
    from searchrun.steps import STEP_ENV, StepContext
    ctx = StepContext.from_json(os.environ[STEP_ENV])
    mode = sys.argv[1]
    key = result_key(ctx.run_uid, ctx.step["stepId"], ctx.step["attempt"])
    if mode == "garbage":
        open_store(ctx.store_uri).put_bytes(key, b"{not json")
    elif mode == "fail":
        print("step failed: StepError: the fake step failed", file=sys.stderr)
        sys.exit(1)
    elif mode == "ok":
        open_store(ctx.store_uri).put_json(key, {"tokens": 1, "intent": "simple", "found": True, "answers": 1})
    sys.exit(0)  # "missing": exit 0 without committing
""")


class Recorder(Progress):
    def __init__(self):
        self.seen: list[tuple] = []

    def run_started(self, run_name, run_uid, store_uri):
        self.seen.append(("run", run_name))

    def step_started(self, action):
        self.seen.append(("start", action.step_id))

    def step_finished(self, step, observation):
        self.seen.append(("done", step.id, observation.state, observation.message))

    def engine_event(self, event):
        self.seen.append(("event", event.reason))


def _run_with_fake_step(tmp_path, mode: str) -> tuple[dict, Recorder]:
    script = tmp_path / "fake_step.py"
    script.write_text(FAKE_STEP)
    run = SearchRun.model_validate({"metadata": {"name": "fake"},
                                    "spec": {"query": "What is BM25?", "steps": {"retries": 0}}})
    rec = Recorder()
    ex = LocalExecutor(run, f"file://{tmp_path / 'store'}", "builtin:sample", progress=rec,
                       step_command=[sys.executable, str(script), mode])
    res = ex.execute()
    return res.status, rec


@pytest.mark.parametrize("mode,message", [
    ("garbage", f"{MALFORMED}: the step's result.json is not valid JSON"),
    ("missing", f"{MALFORMED}: the step's result.json is missing"),
    ("fail", "StepError: the fake step failed"),
])
def test_the_local_executor_observes_the_committed_result_not_the_exit_code_alone(tmp_path, mode, message):
    status, rec = _run_with_fake_step(tmp_path, mode)
    detect = status["steps"][0]
    assert detect["id"] == "detect" and detect["phase"] == "Failed"
    assert detect["message"] == f"failed after 1 attempt(s): {message}"
    assert ("done", "detect", "failed", message) in rec.seen
    assert rec.seen[:2] == [("run", "fake"), ("start", "detect")]


def test_the_local_executor_succeeds_on_a_committed_result(tmp_path):
    status, rec = _run_with_fake_step(tmp_path, "ok")
    detect = status["steps"][0]
    assert detect["phase"] == "Succeeded" and detect["tokens"] == 1
    assert ("done", "detect", "succeeded", "") in rec.seen


# ------------------------------------------------------------------ what the CLI prints


def test_the_progress_printer_prints_the_run_as_before():
    out = io.StringIO()
    p = ProgressPrinter(out)
    p.run_started("r", "0123456789abcdef", "file:///s")
    p.step_started(StartStep("t0", "traverse_node", 2, "j", {"doc": "d1"}, 60, 0))
    p.engine_event(Event("FanOut", "t0 proposed 2 children"))
    p.engine_event(Event("StepStarted", "not shown"))
    assert out.getvalue().splitlines() == [
        "searchrun: run r (uid 0123456789abcdef), artifacts in file:///s",
        "  ▶ t0           traverse_node doc=d1 (attempt 2)",
        "  · t0 proposed 2 children",
    ]
    quiet = io.StringIO()
    ProgressPrinter(quiet, quiet=True).run_started("r", "u", "s")
    assert quiet.getvalue() == ""
