#!/usr/bin/env python3
"""The total cost of a callgrind dump, and the part of it spent inside some functions.

    usage: callgrind_sum.py DUMP REGEX

Prints two numbers: the dump's total (first event, Ir), and INSIDE, the inclusive cost of
every call into a function whose name matches REGEX (re.search) made from a function whose
name does not, so that a matching function calling another one is not counted twice. Used by
bench/cost.sh to leave tokio's park out of a count.

Reads callgrind's format (https://valgrind.org/docs/manual/cl-format.html): `fn=` and `cfn=`
name the current and the called function, with names compressed as `(id) name` once and
`(id)` after; the line after `calls=` holds the call's position(s) and its inclusive cost.
"""
import re
import sys


def main() -> int:
    path, pattern = sys.argv[1], re.compile(sys.argv[2])
    names = {}  # compressed id -> function name
    positions = 1  # numbers before the costs on a cost line ("positions: line" by default)
    total = None
    inside = 0
    caller = callee = ""
    after_calls = False

    def name_of(spec: str) -> str:
        spec = spec.strip()
        if spec.startswith("("):
            ident, _, rest = spec.partition(")")
            rest = rest.strip()
            if rest:
                names[ident] = rest
            return names.get(ident, "")
        return spec

    with open(path, encoding="utf-8", errors="replace") as dump:
        for line in dump:
            if after_calls:
                after_calls = False
                fields = line.split()
                if len(fields) > positions and pattern.search(callee) and not pattern.search(caller):
                    inside += int(fields[positions])
                continue
            if line.startswith("fn="):
                caller = name_of(line[3:])
            elif line.startswith("cfn="):
                callee = name_of(line[4:])
            elif line.startswith("calls="):
                after_calls = True
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
            elif line.startswith(("totals:", "summary:")) and total is None:
                total = int(line.split()[1])
    if total is None:
        print(f"{path}: no totals line", file=sys.stderr)
        return 1
    print(total, inside)
    return 0


if __name__ == "__main__":
    sys.exit(main())
