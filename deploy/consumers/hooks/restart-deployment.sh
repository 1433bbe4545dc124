#!/bin/sh
# A rotator command hook: restarts a consumer Deployment after a rotation, so
# its pods start with the new secret (seconds, instead of waiting for a
# refresh interval). The rotator runs it with the notice (JSON, never the
# secret) on standard input; it is read and dropped, as any rotation of the
# subscriptions this consumer serves calls for a restart.
#
#   restart-deployment.sh DEPLOYMENT [NAMESPACE]
#
#   DEPLOYMENT   the Deployment to restart (required)
#   NAMESPACE    its namespace (default: kubectl's current one)
#
# In the rotator's config (a command hook sees only PATH, HOME, LANG, LC_ALL,
# TZ, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, so everything else
# comes as arguments):
#
#   [[hooks]]
#   command = ["/usr/local/bin/restart-deployment.sh", "webhook-consumer", "payments"]
#
# KUBECTL (default: kubectl on PATH) picks another kubectl when run by hand.
# Needs RBAC "patch" on that deployment (rollout restart patches an annotation);
# in a pod, kubectl finds the API server through KUBERNETES_SERVICE_HOST/PORT
# and the service account token.
set -eu
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
    echo "usage: restart-deployment.sh DEPLOYMENT [NAMESPACE]" >&2
    exit 64
fi
DEPLOYMENT="$1"
NAMESPACE="${2:-}"
KUBECTL="${KUBECTL:-kubectl}"
cat >/dev/null  # the notice: read it all, so the rotator's write never sees a closed pipe
if [ -n "$NAMESPACE" ]; then
    exec "$KUBECTL" rollout restart "deployment/$DEPLOYMENT" -n "$NAMESPACE"
fi
exec "$KUBECTL" rollout restart "deployment/$DEPLOYMENT"
