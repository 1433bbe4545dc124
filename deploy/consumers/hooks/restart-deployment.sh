#!/bin/sh
# A rotator command hook: restarts a consumer Deployment after a rotation, so
# its pods start with the new secret (seconds, instead of waiting for a
# refresh interval). The rotator runs it with the notice (JSON, never the
# secret) on standard input; it is read and dropped, as any rotation of the
# subscriptions this consumer serves calls for a restart.
#
#   DEPLOYMENT   the Deployment to restart (required)
#   NAMESPACE    its namespace (default: kubectl's current one)
#   KUBECTL      the kubectl to run (default: kubectl; tests pass a fake)
#
# Needs RBAC "patch" on that deployment (rollout restart patches an annotation).
set -eu
: "${DEPLOYMENT:?set DEPLOYMENT to the consumer Deployment to restart}"
KUBECTL="${KUBECTL:-kubectl}"
cat >/dev/null  # the notice: read it all, so the rotator's write never sees a closed pipe
if [ -n "${NAMESPACE:-}" ]; then
    exec "$KUBECTL" rollout restart "deployment/$DEPLOYMENT" --namespace "$NAMESPACE"
fi
exec "$KUBECTL" rollout restart "deployment/$DEPLOYMENT"
