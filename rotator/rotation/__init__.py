"""The rotation protocol, version 2: the public face of the `rotator.rotation` package.

`rotate` runs one rotation of one subscription and returns its `Outcome`;
the engine hands it a `Context`. Inside the package:

- `protocol`: the steps, in order, top to bottom (start reading here);
- `_types`: the values passed in, between the steps and back out;
- `_commit`: the commit write, its retries while the secret is in memory only, and its check.

The timing arithmetic the steps use (how long a rotation settles) is in
`rotator.policy`, pure.
"""

from rotator.reasons import OutcomeKind
from rotator.rotation._types import Context, Outcome
from rotator.rotation.protocol import rotate

__all__ = ["Context", "Outcome", "OutcomeKind", "rotate"]
