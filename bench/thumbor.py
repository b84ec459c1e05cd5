"""Misses against thumbor alone: bench/peers.py with ``--peers thumbor`` (the name older notes use).

    .venv/bin/python bench/thumbor.py [--rounds 3] [--duration 5] [--cases a,b,c,d,e] [--out DIR]

Every argument of bench/peers.py is taken; results go to peers.json/.md, only with --out.
"""

from __future__ import annotations

import sys

from peers import main

if __name__ == "__main__":
    main(["--peers", "thumbor", *sys.argv[1:]])
