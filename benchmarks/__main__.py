"""`python -m benchmarks`: the speed suite (see benchmarks/speed.py)."""

from benchmarks.speed import main

main()
