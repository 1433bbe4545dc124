"""`rotator demo`: the whole product on embedded emulators, with consumers, and no setup.

Monite and Vault emulators on loopback, a dozen subscriptions of every kind,
accelerated cycles (seconds instead of days) with one forced rotation and one
injected fault, and two example consumers receiving signed deliveries side by
side: one reloads its secrets on a timer, like Vault Agent; the other is told
by the rotator's hook. The closing table shows Vault holding exactly Monite's
current secret everywhere, and what each consumer verified and rejected.

`rotator demo --strategy swap` runs two timer consumers instead, one group of
subscriptions rotated by the swap strategy and one by regenerate, follows each
original through its swaps, and sets the groups' rejected deliveries side by side.

Modules: `_world` (the emulators, consumers, deliveries and seeds), `_story`
(what is printed), `_run` (the cycles), `_lineage` (the swap demo's closing report).
"""

from __future__ import annotations

from rotator.sandbox.demo._run import run_demo
from rotator.sandbox.demo._world import ROTATOR_POLICY_HCL

__all__ = ["ROTATOR_POLICY_HCL", "run_demo"]
