"""`make bench`: the performance figures of issue 5, measured against the emulators.

Run with `python -m tests.perf [--only a,b,...] [--quick] [--json PATH]`. Every
scenario drives the product as it is at the time it runs (the real Engine, the
real MoniteClient, the real `rotator run` process) against the Monite and Vault
emulators with set latency and rate limit, and prints each figure next to its
target. Nothing here is collected by pytest: no file is named `test_*.py`.
"""
