"""Warm local steps (``--isolation fork``): the same lineage as cold steps, the corpus loaded once per
worker, and a step that crashes, hangs or blows its memory fails alone and is retried."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from searchrun.api import SearchRun
from searchrun.executors.local import LocalExecutor, Progress, resolve_corpus_uri
from searchrun.executors.local_pool import memory_bytes

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "examples" / "searchrun.yaml").read_text())

# Run as the worker (``worker``) or as a cold step (``step``): counts every corpus load in
# $TEST_LOADS (one line per load, appended, so forked children count too) and sabotages the
# first attempt of step $TEST_SABOTAGE_STEP as $TEST_SABOTAGE says.
WRAPPER = r'''
import json, os, signal, sys, time
import searchrun.corpus, searchrun.steps.io
from searchrun.steps import entrypoint

real_load = searchrun.corpus.load_corpus
def counting_load(*a, **kw):
    with open(os.environ["TEST_LOADS"], "a") as f:
        f.write(f"{os.getpid()}\n")
    return real_load(*a, **kw)
searchrun.corpus.load_corpus = searchrun.steps.io.load_corpus = counting_load

real_execute = entrypoint.execute
def execute(text, result_file=None, make_io=entrypoint.StepIO):
    step = json.loads(text)["step"]
    if step["stepId"] == os.environ.get("TEST_SABOTAGE_STEP") and int(step["attempt"]) == 1:
        how = os.environ["TEST_SABOTAGE"]
        if how == "exit":
            os._exit(7)  # not EXIT_PERMANENT (3): a crash, retried
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "hang":
            time.sleep(120)
        if how == "memory":
            hog = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB, past the 256Mi step limit
        if how == "kill-worker":
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(120)
    return real_execute(text, result_file, make_io)
entrypoint.execute = execute

if sys.argv[1] == "worker":
    from searchrun.executors.local_workers import main
    sys.exit(main(sys.argv[2:]))
from searchrun.cli import main
sys.exit(main(["step", *sys.argv[2:]]))
'''


class Recorder(Progress):
    def __init__(self):
        self.finished: list[tuple[str, str, str]] = []

    def step_finished(self, step, observation):
        self.finished.append((step.id, observation.state, observation.message))


def _shape(status: dict) -> list:
    keep = ("id", "type", "parents", "depth", "doc", "phase", "found", "decision", "tokens", "next", "via", "note",
            "tokenAllowance", "attempts")
    return [{k: s.get(k) for k in keep} for s in status["steps"]]


def _execute(tmp_path: Path, isolation: str, name: str, budget: dict = (), steps: dict = (), env: dict = (),
             monkeypatch=None):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    loads = tmp_path / f"loads-{name}"
    loads.write_text("")
    spec = dict(EXAMPLE["spec"], budget=dict(EXAMPLE["spec"]["budget"], **dict(budget)),
                steps=dict(EXAMPLE["spec"]["steps"], **dict(steps)))
    spec.pop("artifacts", None)
    run = SearchRun.model_validate({"metadata": {"name": name}, "spec": spec})
    monkeypatch.setenv("TEST_LOADS", str(loads))
    for k, v in dict(env).items():
        monkeypatch.setenv(k, v)
    rec = Recorder()
    ex = LocalExecutor(run, f"file://{tmp_path / ('store-' + name)}", resolve_corpus_uri(run, REPO / "examples"),
                       progress=rec, isolation=isolation, step_command=[sys.executable, str(wrapper), "step"],
                       worker_command=[sys.executable, str(wrapper), "worker"])
    res = ex.execute()
    return res, ex, rec, len(loads.read_text().split())


def _outputs(tmp_path: Path, name: str, res) -> dict:
    run_dir = tmp_path / f"store-{name}" / "runs" / res.run_uid
    out = {}
    for p in sorted(run_dir.glob("steps/*/a*/*")):
        text = p.read_text().replace(str(run_dir), "RUN")  # URIs name the run's own folder
        if p.suffix == ".json":
            doc = json.loads(text)
            doc.pop("seconds", None)
        else:  # log.txt: what the step printed (its result, with its timing)
            doc = [line.split('"seconds"')[0] for line in text.splitlines()]
        out[str(p.relative_to(run_dir))] = doc
    return out


@pytest.mark.parametrize("parallel", [1, 4])
def test_fork_and_process_give_the_same_lineage_and_artifacts(tmp_path, monkeypatch, parallel):
    got = {}
    for isolation in ("process", "fork"):
        name = f"{isolation}-{parallel}"
        res, ex, _, loads = _execute(tmp_path, isolation, name, budget={"maxParallel": parallel}, monkeypatch=monkeypatch)
        assert res.phase == "Succeeded" and res.isolation == isolation
        got[isolation] = (_shape(res.status), _outputs(tmp_path, name, res), loads, res.corpus_loads)
    (cold_shape, cold_out, cold_loads, _), (warm_shape, warm_out, warm_loads, warm_counted) = got["process"], got["fork"]
    assert warm_shape == cold_shape
    # every step's output.json and committed result.json, byte for byte but the timing
    assert warm_out.keys() == cold_out.keys() and warm_out == cold_out
    assert {p.rsplit("/", 1)[1] for p in warm_out} == {"input.json", "output.json", "result.json", "log.txt"}
    uses_corpus = sum(1 for s in cold_shape if s["type"] in ("plan_search", "traverse_node", "create_report"))
    assert cold_loads >= uses_corpus > 3  # each cold step loads the corpus again...
    assert warm_loads == 1 and warm_counted == 1  # ...a warm worker once, for all of them


SABOTAGE = [
    ("exit", "exit code 7"),
    ("sigkill", "exit code -9"),
    ("hang", "timed out after 1s"),
    ("memory", "MemoryError"),
]


@pytest.mark.parametrize("how,why", SABOTAGE, ids=[h for h, _ in SABOTAGE])
def test_a_step_that_crashes_hangs_or_blows_its_memory_fails_alone_and_is_retried(tmp_path, monkeypatch, how, why):
    clean, *_ = _execute(tmp_path, "fork", "clean", monkeypatch=monkeypatch)
    steps = {"backoffSeconds": 0.1, "timeoutSeconds": 1 if how == "hang" else 120}
    res, ex, rec, loads = _execute(tmp_path, "fork", how, steps=steps, monkeypatch=monkeypatch,
                                   env={"TEST_SABOTAGE": how, "TEST_SABOTAGE_STEP": "plan"})
    assert res.phase == "Succeeded"
    failed = [f for f in rec.finished if f[1] != "succeeded"]
    assert len(failed) == 1 and failed[0][0] == "plan" and why in failed[0][2], rec.finished
    assert [s for s in rec.finished if s[0] == "plan"][-1][1] == "succeeded"
    # the same run as without the sabotage, but for the plan step's second attempt
    want = _shape(clean.status)
    next(s for s in want if s["id"] == "plan")["attempts"] = 2
    assert _shape(res.status) == want
    assert len(ex.workers.ready) == 1 and loads == 1, "the worker lived on: one worker, one corpus load"


def test_a_worker_that_dies_fails_its_running_steps_and_a_new_one_takes_over(tmp_path, monkeypatch):
    res, ex, rec, loads = _execute(tmp_path, "fork", "w", steps={"backoffSeconds": 0.1}, monkeypatch=monkeypatch,
                                   env={"TEST_SABOTAGE": "kill-worker", "TEST_SABOTAGE_STEP": "plan"})
    assert res.phase == "Succeeded"
    failed = [f for f in rec.finished if f[1] != "succeeded"]
    assert [f[0] for f in failed] == ["plan"] and "the step worker" in failed[0][2], rec.finished
    assert len(ex.workers.ready) == 2 and loads == 2


def test_an_unknown_isolation_is_rejected_naming_the_choices(tmp_path):
    run = SearchRun.model_validate({"metadata": {"name": "x"}, "spec": {"query": "q"}})
    with pytest.raises(ValueError, match="isolation must be one of fork, process"):
        LocalExecutor(run, f"file://{tmp_path}", "builtin:sample", isolation="thread")


def test_memory_quantities():
    assert memory_bytes("256Mi") == 256 << 20
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("1.5Gi") == 3 << 29
    assert memory_bytes(None) == 0


FORKED = r'''
import json, os, sys, tempfile, yaml
import searchrun.corpus, searchrun.steps.io
from searchrun.api import SearchRun
from searchrun.executors.local import LocalExecutor

loads, example = sys.argv[1], sys.argv[2]
real = searchrun.corpus.load_corpus
def counting_load(*a, **kw):
    with open(loads, "a") as f:
        f.write(f"{os.getpid()}\n")
    return real(*a, **kw)
searchrun.corpus.load_corpus = searchrun.steps.io.load_corpus = counting_load
spec = yaml.safe_load(open(example))["spec"]
spec.pop("artifacts", None)
run = SearchRun.model_validate({"metadata": {"name": "forked"}, "spec": spec})
ex = LocalExecutor(run, "file://" + tempfile.mkdtemp(), "builtin:sample", isolation="fork")
res = ex.execute()
print(json.dumps({"phase": res.phase, "steps": len(res.status["steps"]), "forked": ex.workers.forked,
                  "corpusLoads": res.corpus_loads, "pid": os.getpid()}))
'''


def test_a_worker_forked_from_the_executor_loads_the_corpus_once(tmp_path):
    """No worker command of one's own, and no other thread (so not in pytest's process, which has
    one): the worker is forked from the executor, which has done the imports; a load counted there
    is counted in the worker and its children too."""
    script, loads = tmp_path / "forked.py", tmp_path / "loads"
    script.write_text(FORKED)
    loads.write_text("")
    r = subprocess.run([sys.executable, str(script), str(loads), str(REPO / "examples" / "searchrun.yaml")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["phase"] == "Succeeded" and out["steps"] > 5
    assert out["forked"] == 1, "forked from the executor, not a fresh interpreter"
    in_steps = [pid for pid in loads.read_text().split() if pid != str(out["pid"])]  # not the executor's own
    assert len(in_steps) == 1 and out["corpusLoads"] == 1


def test_a_worker_that_cannot_start_fails_the_steps_with_its_reason(tmp_path):
    run = SearchRun.model_validate({"metadata": {"name": "x"},
                                    "spec": {"query": "What is BM25?", "steps": {"retries": 1, "backoffSeconds": 0.1}}})
    broken = [sys.executable, "-c", "import sys; print('no step code here', file=sys.stderr); sys.exit(3)"]
    rec = Recorder()
    ex = LocalExecutor(run, f"file://{tmp_path}", "builtin:sample", progress=rec, isolation="fork", worker_command=broken)
    res = ex.execute()
    assert res.phase == "Failed"
    assert [f[0] for f in rec.finished][:2] == ["detect", "detect"]  # tried, retried with a new worker
    assert rec.finished and all(f[1] == "failed" and "the step worker" in f[2]
                                and "exited with code 3: no step code here" in f[2] for f in rec.finished)
