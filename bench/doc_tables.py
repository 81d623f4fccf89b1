"""make bench's accuracy tables, written into docs/accuracy.md so the doc shows what the code measures now.

Each table sits in the doc between `<!-- make bench: bench/NAME.py -->` and `<!-- end make bench -->`. This script
runs each bench's main, prints its output and puts it between those lines; the error bands' run also rewrites
operator/rackfit/estimator/measured_bands.py. With --check it writes nothing and exits 1 when a block is stale
(tests/unit runs it). With --cases FILE (rows of your own cluster) the training and serving tables are printed for
FILE and the doc is left alone.
Usage: python bench/doc_tables.py [--check | --cases FILE]
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import accuracy
import error_bands
import public_serving
import public_training

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "accuracy.md"
BENCHES = {"accuracy.py": accuracy.main, "public_training.py": public_training.main,
           "public_serving.py": public_serving.main, "error_bands.py": error_bands.main}
END = "<!-- end make bench -->"


def run(main, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue().strip("\n")


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- make bench: bench/{re.escape(name)} -->\n).*?(\n{re.escape(END)})", re.S)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cases"]:
        status = 0
        for name in ("public_training.py", "public_serving.py"):
            status |= BENCHES[name](argv)
        return status
    check = argv == ["--check"]
    doc = DOC.read_text()
    status, stale = 0, []
    for name, bench in BENCHES.items():
        if check and bench is error_bands.main:  # the same table, without rewriting measured_bands.py
            rc, text = 0, error_bands.table(error_bands.bands())
        else:
            rc, text = run(bench, [])
        status |= rc
        if not check:
            print(text, end="\n\n")
        m = block(name).search(doc)
        if not m:
            print(f"{DOC.relative_to(ROOT)} has no block for bench/{name}", file=sys.stderr)
            return 2
        new = doc[:m.start()] + f"{m.group(1)}\n{text}\n{m.group(2)}" + doc[m.end():]
        if new != doc:
            stale.append(name)
        doc = new
    if check:
        if stale:
            print(f"{DOC.relative_to(ROOT)} is stale for {', '.join(stale)}: run `make bench`", file=sys.stderr)
            return 1
        return status
    DOC.write_text(doc)
    if stale:
        print(f"updated {DOC.relative_to(ROOT)}: {', '.join(stale)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
