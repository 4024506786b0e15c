#!/usr/bin/env python3
"""Write the chart's budget caps from api.Budget, as `searchrun crd` writes the CRD.

Rewrites two places of charts/searchrun-operator and nothing else:
  * values.yaml: the `policy.caps` block (each cap's default, BudgetMeta.cap);
  * values.schema.json: `policy.caps` (each cap's type and minimum, the budget's lower
    bound) and the `policy.clamp` enum (the clampable budgets).
templates/_helpers.tpl passes `policy.caps` whole to the operator, so it names no field.
tests/unit/test_chart_budgets.py fails when the files differ from what this writes.
A new budget also needs its value in ci/all-options-values.yaml (tests/integration/test_chart.py).

Usage: .venv/bin/python hack/gen-chart-budgets.py [--check]
  --check: change nothing; exit 1 and name the stale files if a write would change them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from searchrun.admission import CLAMPABLE, Caps

CHART = Path(__file__).resolve().parents[1] / "charts" / "searchrun-operator"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

# The caps block of values.yaml: "  caps:" under "policy:", then its 4-space-indented lines.
_CAPS_BLOCK = re.compile(r"(?m)^(policy:\n(?:(?:  .*|\s*)\n)*?  caps:\n)((?:    .*\n)+)")


def _yaml_number(value: float) -> str:
    # 50, not 50.0: helm renders a whole float as an integer, and the chart test compares types.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def caps_values() -> dict[str, float]:
    return Caps().model_dump()


def caps_schema() -> dict[str, dict]:
    props = Caps.model_json_schema()["properties"]
    out = {}
    for name, prop in props.items():
        minimum = prop["minimum"]
        out[name] = {"type": prop["type"], "minimum": int(minimum) if float(minimum).is_integer() else minimum}
    return out


def values_text(text: str) -> str:
    m = _CAPS_BLOCK.search(text)
    if not m:
        raise SystemExit(f"{VALUES}: no `caps:` block under `policy:`")
    block = "".join(f"    {name}: {_yaml_number(v)}\n" for name, v in caps_values().items())
    return text[: m.start(2)] + block + text[m.end(2):]


def schema_text(text: str) -> str:
    schema = json.loads(text)
    policy = schema["properties"]["policy"]["properties"]
    policy["caps"]["properties"] = caps_schema()
    policy["clamp"]["items"]["enum"] = list(CLAMPABLE)
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is stale; write nothing")
    args = ap.parse_args()
    stale = []
    for path, render in ((VALUES, values_text), (SCHEMA, schema_text)):
        old = path.read_text()
        new = render(old)
        if new == old:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new)
    if stale and args.check:
        print("stale (run hack/gen-chart-budgets.py): " + ", ".join(str(p.relative_to(CHART.parents[1])) for p in stale), file=sys.stderr)
        return 1
    for p in stale:
        print(f"wrote {p.relative_to(CHART.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
