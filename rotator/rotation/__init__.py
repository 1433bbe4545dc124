"""The rotation protocols: the public face of the `rotator.rotation` package.

`rotate` runs one rotation of one subscription (version 2, regenerate) and
`swap` one step sequence of a swap (version 3, docs/swap.md); both return an
`Outcome`, and the engine hands them a `Context`. Inside the package:

- `protocol`: the regenerate steps, in order, top to bottom (start reading here);
- `swap`: the swap steps, in order, and the recovery of an expired swap claim;
- `_types`: the values passed in, between the steps and back out;
- `_commit`: the commit write, its retries while the secret is in memory only, and its check;
- `_monite_call`: the one non-idempotent Monite call of each protocol (regenerate,
  create), retried within the claim.

The timing arithmetic the steps use (how long a rotation settles) is in
`rotator.policy`, pure.
"""

from rotator.reasons import OutcomeKind
from rotator.rotation._types import Context, Outcome
from rotator.rotation.protocol import rotate
from rotator.rotation.swap import swap

__all__ = ["Context", "Outcome", "OutcomeKind", "rotate", "swap"]
