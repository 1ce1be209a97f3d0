"""The benchmark harness (`make bench`, `python -m bench`): the real system against its references.

Each scenario of issue 6 starts from the system the harness runs itself (bench/system.py), drives it
with wrk on loopback (bench/wrk.py) side by side with its reference, and lands in bench/REPORT.md as
a ratio, the raw figures, the goal and PASS/MISS (bench/report.py).
"""
