"""Print the Markdown tables of the dated benchmark result files: python -m benchmarks.report [FILES...]

Why: the benchmark figures live in committed, dated JSON files under benchmarks/results/, and the
tables of benchmarks/README.md are this script's output, pasted in. A figure is therefore written in
exactly one place (its JSON file) and a table can always be checked against, or remade from, its data.

Without FILES it reads every dated file (benchmarks/results/YYYY-MM-DD*.json, oldest first), never
latest.json, the scratch file that ``python -m benchmarks.run`` writes. Two layouts are understood:
- curated tables (``{"date", "machine", "tables": [{"title", "columns", "rows", ...}]}``): each table
  is printed with its date, conditions, commands and notes;
- a raw ``python -m benchmarks.run`` result (``{"machine", "models", "data", ...}``), copied to a dated
  name: one table of every figure, its unit and its spread.
Standard library only, so it runs without MindSpore.
"""
import glob
import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "{:g}".format(value)
    return str(value).replace("|", "\\|")


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def curated(data):
    out = []
    for table in data["tables"]:
        header = ["Date: %s. Machine: %s." % (table.get("date", data["date"]), table.get("machine", data["machine"]))]
        header += [table["conditions"]] if table.get("conditions") else []
        commands = ["- `%s`%s" % (c["command"], ": " + c["note"] if c.get("note") else "")
                    for c in table.get("commands", [])]
        keys = [key for key, _ in table["columns"]]
        rows = markdown_table([title for _, title in table["columns"]],
                              [[row.get(key) for key in keys] for row in table["rows"]])
        notes = ["- " + note for note in table.get("notes", [])]
        for block in (["### " + table["title"]], header, commands, rows, notes):
            out += block + [""] if block else []
    return out


def flatten(results, prefix=""):
    """(``a / b / key``, figure) for every figure (a dict with a ``value``) of a nested result."""
    for key, value in results.items():
        if isinstance(value, dict) and "value" in value:
            yield prefix + key, value
        elif isinstance(value, dict):
            yield from flatten(value, prefix + key + " / ")


def raw(data, name):
    machine, run = data.get("machine", {}), data.get("run", {})
    out = ["### %s (python -m benchmarks.run)" % name, "",
           "Machine: %s cores, %s, Python %s, measured fp32 peak %s GFLOP/s." % tuple(
               cell(machine.get(k)) for k in ("cpu_count", "platform", "python", "peak_fp32_gflops"))]
    out += ["Run: `%s`, %s. %s" % (run.get("command", "python -m benchmarks.run"), run.get("date", "date not recorded"),
                                   run.get("conditions", "")), ""]
    rows = [[key, entry["value"], entry.get("unit", ""), "%.0f %%" % (100 * entry.get("noise", 0.0)),
             entry.get("what", "")]
            for key, entry in flatten({k: v for k, v in data.items() if k not in ("machine", "run")})]
    return out + markdown_table(["figure", "value", "unit", "spread", "what was timed"], rows) + [""]


def report(paths):
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
        out += curated(data) if "tables" in data else raw(data, os.path.basename(path))
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    paths = sys.argv[1:] if argv is None else argv
    paths = paths or sorted(glob.glob(os.path.join(RESULTS, "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*.json")))
    if not paths:
        print("error: no dated result files in %s" % RESULTS, file=sys.stderr)
        return 1
    try:
        text = report(paths)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print("error: cannot make the tables: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
