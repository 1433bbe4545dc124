# Vault Agent (or OpenBao Agent: `bao agent -config=agent.hcl`, same format) that
# keeps one Monite webhook signing secret in a file and tells the consumer when
# it changed. Run it as a sidecar beside the consumer, sharing an emptyDir at
# /run/monite-webhooks (and a tmpfs there outside Kubernetes).
#
# Latency: a KV v2 secret has no lease, so the agent re-reads it every
# `static_secret_render_interval` (default 5 minutes). The rotator's new secret
# is valid at Monite at once and the old one is dead at once, so every second of
# that interval is a second of refused deliveries: 10s bounds the outage at
# about 10s, for one Vault read per 10s per agent. The rotator's hooks
# (deploy/consumers/hooks) cut it below a second.
#
# Environment of the agent: VAULT_ADDR (or set `address` below),
# MONITE_SUBSCRIPTION_ID (which record to render), optionally ROTATOR_KV_MOUNT
# and ROTATOR_PATH_PREFIX (see webhook-secret.ctmpl), CONSUMER_PID_FILE (reload.sh).
#
# No `pid_file`: nothing here signals the agent (reload.sh signals the consumer),
# and /run/monite-webhooks is the consumer's secrets volume, where the agent's own
# files do not belong. If you need one, give the agent a writable directory of its
# own, e.g. pid_file = "/run/vault-agent/agent.pid" on an emptyDir mounted only
# in the agent's container.

vault {
  address = "https://vault.example.internal:8200"
}

# --- auth: begin (tests/test_deploy_consumers.py swaps this block for a token file)
auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = {
      role = "monite-webhook-consumer"
    }
  }

  sink "file" {
    config = {
      path = "/run/monite-webhooks/.agent-token"
      mode = 0400
    }
  }
}
# --- auth: end

template_config {
  # Re-read secrets without a lease (KV v2) this often. Default 5m.
  static_secret_render_interval = "10s"
  # Keep serving the last good file while Vault is briefly unreachable.
  exit_on_retry_failure = false
}

template {
  source      = "/etc/vault-agent/webhook-secret.ctmpl"
  destination = "/run/monite-webhooks/secret"
  perms       = "0400"
  # Only a changed secret re-renders the file and runs the command.
  exec {
    command = ["/bin/sh", "/etc/vault-agent/reload.sh"]
    timeout = "30s"
  }
}
