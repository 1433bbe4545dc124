"""A deterministic simulation of the rotation protocol in virtual time.

Real `rotator.engine.Engine` replicas (and one-shot `rotate --force` engines)
run over in-memory Monite and Vault models on a virtual-time event loop,
seeded and replayable, with faults, crashes at any await point, and shrinking.

- `loop.py`: the virtual-time event loop and the per-host `SimClock`
- `models.py`: Vault KV v2 and Monite, and the per-replica port adapters
- `scenario.py`: scenario generation, a run, the invariants, shrinking
- `runner.py`: many scenarios over worker processes, figures
- `python -m tests.sim --help` (or `make sim`): the command line
"""
