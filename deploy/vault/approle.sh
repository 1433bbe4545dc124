#!/usr/bin/env bash
# approle.sh: an example of the Vault side of a systemd deployment that logs
# in with AppRole instead of a long-lived token. Creates the policy and an
# AppRole role, prints the role id for rotator.toml, and writes a secret id
# where the systemd units expect it.
#
# Run as root on the rotator's host, with a Vault token allowed to write
# policies, enable auth methods and manage AppRole roles:
#   VAULT_ADDR=https://vault.example.com:8200 ./deploy/vault/approle.sh
# With OpenBao: VAULT_CLI=bao BAO_ADDR=... ./deploy/vault/approle.sh
# AUTH_MOUNT (default approle) names the AppRole mount (vault.auth_mount);
# CONF_DIR (default /etc/monite-secret-rotator) is where the secret id goes.
# Then in /etc/monite-secret-rotator/rotator.toml:
#   [vault]
#   auth_method = "approle"
#   role_id = "<the role id this script prints>"
# (the role id names the role and is not a secret; the service's dynamic user
# could not read a root-only file in /etc anyway, which is why the secret id
# travels as a systemd credential instead)
# and swap the vault_token credential for vault_secret_id in the unit (see
# the drop-in in deploy/systemd/monite-secret-rotator.service).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
conf_dir="${CONF_DIR:-/etc/monite-secret-rotator}"
auth_mount="${AUTH_MOUNT:-approle}"
# The vault CLI, or OpenBao's bao: both take the same commands.
vault_cli="${VAULT_CLI:-vault}"

"${vault_cli}" policy write monite-secret-rotator "${here}/policy.hcl"

# Enable AppRole at auth_mount unless something is mounted there already (the
# role write below fails with 404 otherwise). `auth list` is read whole first:
# grep -q would stop reading early and fail the pipe under pipefail.
auth_methods="$("${vault_cli}" auth list -format=json)"
if ! grep -qF "\"${auth_mount}/\"" <<<"${auth_methods}"; then
  "${vault_cli}" auth enable -path="${auth_mount}" approle
fi

# - token_ttl=1h / token_max_ttl=4h: short-lived tokens; the rotator logs in
#   again with role_id + secret_id when one expires.
# - secret_id_num_uses=0, secret_id_ttl=0: the daemon logs in many times over
#   its life. Set secret_id_ttl (for example 720h) if you rotate secret ids
#   with your configuration management.
# - token_bound_cidrs (optional): pin tokens to the rotator host's address.
"${vault_cli}" write "auth/${auth_mount}/role/monite-secret-rotator" \
  token_policies=monite-secret-rotator \
  token_ttl=1h \
  token_max_ttl=4h \
  secret_id_num_uses=0 \
  secret_id_ttl=0

echo "role_id for rotator.toml:"
"${vault_cli}" read -field=role_id "auth/${auth_mount}/role/monite-secret-rotator/role-id"
echo

# 0755: the service's dynamic user reads rotator.toml here; the secret files
# next to it are root-only and reach the service only as systemd credentials.
install -d -m 0755 "${conf_dir}"
umask 077
# The secret id goes straight into a root-only file, never onto the screen;
# systemd hands it to the service as the credential vault_secret_id.
"${vault_cli}" write -f -field=secret_id "auth/${auth_mount}/role/monite-secret-rotator/secret-id" \
  >"${conf_dir}/vault_secret_id"
