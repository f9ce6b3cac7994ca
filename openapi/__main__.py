"""`python -m openapi` rewrites the committed documents; `--check` only compares them."""

from __future__ import annotations

import sys

from openapi import REGENERATE, path, stale, write


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        found = stale()
        for service in found:
            print(f"{path(service)} differs from the code: run `{REGENERATE}`", file=sys.stderr)
        return 1 if found else 0
    if argv:
        print("usage: python -m openapi [--check]", file=sys.stderr)
        return 2
    write()
    return 0


sys.exit(main(sys.argv[1:]))
