#!/bin/sh
# Run by Vault Agent (template `exec`) after it re-rendered the webhook secret:
# tells the consumer to drop its cached secret. The consumer writes its pid to
# CONSUMER_PID_FILE and reloads on SIGHUP. In Kubernetes the agent sidecar and
# the consumer need `shareProcessNamespace: true` for the signal to reach it;
# a consumer with an HTTP reload endpoint can be called here instead.
set -eu
pid_file="${CONSUMER_PID_FILE:-/run/consumer/consumer.pid}"
if [ ! -s "$pid_file" ]; then
    echo "reload.sh: no consumer pid in $pid_file; it reads the new file when it starts" >&2
    exit 0
fi
kill -HUP "$(cat "$pid_file")"
