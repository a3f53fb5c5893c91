"""Writes REPORT.md from the conformance test's output.

    cargo test --test conformance -- --nocapture 2>&1 | python3 tests/conformance/report.py
"""
import collections
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent


def normalise(reason):
    for pattern, repl in [
        (r"the \w+ node writing \w+ \(opset \d+\): ", ""),
        (r"node test \(\w+\) \(opset \d+\): ", ""),
        (r"\[[^\]]*\]", "[..]"),
        (r"axis -?\d", "axis N"),
        (r"reads \w+,", "reads X,"),
        (r"\d+(\.\d+)? x \d+(\.\d+)?", "a x b"),
        (r"rank-\d", "rank-N"),
        (r"mode=\w+ and nearest_mode=\w+", "mode=.. and nearest_mode=.."),
        (r"mode=\w+ is", "mode=.. is"),
        (r"auto_pad=\w+", "auto_pad=SAME_*"),
        (r"output \w+ is never", "output .. is never"),
        (r"\(\w+\) must be a constant", "(..) must be a constant"),
    ]:
        reason = re.sub(pattern, repl, reason)
    return reason.replace("|", "/")


def main():
    text = sys.stdin.read()
    text = text[text.index("ONNX node tests:"):]
    head, _, _ = text.partition("failing:")
    lines = [l for l in head.splitlines() if l.strip()]
    total = lines[0].split(":", 1)[1].replace(" pass", "").strip()
    reasons = collections.Counter()
    for line in (HERE / "known_failures.txt").read_text().splitlines():
        if line.startswith("#") or "\t" not in line:
            continue
        reasons[normalise(line.split("\t", 1)[1].strip())] += 1
    out = [
        "# ONNX backend node tests",
        "",
        "`cargo test --test conformance -- --nocapture` runs the node tests of pip's `onnx`",
        "(`onnx.backend.test.case.node`, written to `node/` by `generate.py`) for every op the importer",
        "supports, on the GPU. Each test's first input is the data; its other inputs become constants.",
        "Rank-4 data runs through the image lowering (free batch and size) when it takes the graph,",
        "everything else through the static lowering (every shape fixed, the whole tensor one item).",
        "Tolerance: |got - want| <= 1e-5 + 1e-3 |want|. Regenerate this page with `report.py`.",
        "",
        f"**{total} pass** (onnx 1.23.2, lavapipe). Every failure is a refusal with a reason, not a",
        "wrong number; `known_failures.txt` lists each test with its reason.",
        "",
        "| op | passed / total |",
        "|---|---:|",
    ]
    for line in lines[1:]:
        op, frac = line.split()
        out.append(f"| {op} | {frac} |")
    out += ["", "## Why the others fail", "", "| reason | tests |", "|---|---:|"]
    out += [f"| {r} | {c} |" for r, c in reasons.most_common()]
    (HERE / "REPORT.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
