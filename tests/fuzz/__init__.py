"""Fuzzing pmdb's parsers and the kernel structures it reads from a dump.

Every target (tests/fuzz/targets.py) takes bytes and must either succeed or fail with
a pmdb error: an unhandled exception, more than a second, or unbounded memory is a
finding. ``python -m tests.fuzz --list`` names them; ``python -m tests.fuzz TARGET
--runs N`` runs a campaign (atheris when installed, else random mutation of the seeds);
tests/test_fuzz.py runs a short smoke of each and replays the kept corpus
(tests/data/fuzz/) as regression tests.
"""
