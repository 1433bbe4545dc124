#!/usr/bin/env bash
# kubernetes-auth-role.sh: an example of the Vault side of a Kubernetes
# deployment. Creates the policy and a Kubernetes-auth role that lets pods of
# the service account "monite-secret-rotator" in namespace
# "monite-secret-rotator" log in with a token projected for the "vault"
# audience (see deploy/kubernetes/base/deployment.yaml).
#
# Run with a Vault token allowed to write policies, enable auth methods and
# write auth roles, for example:
#   VAULT_ADDR=https://vault.example.com:8200 ./deploy/vault/kubernetes-auth-role.sh
# With OpenBao: VAULT_CLI=bao BAO_ADDR=... ./deploy/vault/kubernetes-auth-role.sh
# Read it before running it: it is a starting point, not an installer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
namespace="${NAMESPACE:-monite-secret-rotator}"
auth_mount="${AUTH_MOUNT:-kubernetes}"
# The vault CLI, or OpenBao's bao: both take the same commands.
vault_cli="${VAULT_CLI:-vault}"

"${vault_cli}" policy write monite-secret-rotator "${here}/policy.hcl"

# Enable the Kubernetes auth method at auth_mount unless something is mounted
# there already (the role write below fails with 404 otherwise). `auth list`
# is read whole first: grep -q in a pipe could fail it under pipefail.
auth_methods="$("${vault_cli}" auth list -format=json)"
if ! grep -qF "\"${auth_mount}/\"" <<<"${auth_methods}"; then
  "${vault_cli}" auth enable -path="${auth_mount}" kubernetes
fi

# Once per cluster, the method needs the API server it asks to review tokens.
# Set KUBERNETES_HOST (and KUBERNETES_CA_CERT, a PEM file, unless Vault runs in
# the cluster and reads its pod's own CA) to have this script write it; Vault
# inside the cluster can use https://kubernetes.default.svc:443 and its own
# service account. Outside the cluster it also needs a token_reviewer_jwt:
# write the config yourself then, for example
#   vault write "auth/${auth_mount}/config" kubernetes_host=https://api.example:6443 \
#     kubernetes_ca_cert=@ca.pem token_reviewer_jwt=@reviewer.jwt
if [[ -n "${KUBERNETES_HOST:-}" ]]; then
  config=(kubernetes_host="${KUBERNETES_HOST}")
  if [[ -n "${KUBERNETES_CA_CERT:-}" ]]; then
    config+=(kubernetes_ca_cert=@"${KUBERNETES_CA_CERT}")
  fi
  "${vault_cli}" write "auth/${auth_mount}/config" "${config[@]}"
fi

# - bound_service_account_*: only this service account in this namespace.
# - audience: only tokens minted for Vault, not the pod's API-server token.
# - token_ttl=1h: a stolen Vault token is useful for an hour at most; the
#   rotator logs in again with a fresh projected token when it expires.
# - token_policies: nothing but the rotator's policy (plus "default").
# (Older Vault releases spell token_policies and token_ttl as policies and ttl.)
"${vault_cli}" write "auth/${auth_mount}/role/monite-secret-rotator" \
  bound_service_account_names=monite-secret-rotator \
  bound_service_account_namespaces="${namespace}" \
  audience=vault \
  token_policies=monite-secret-rotator \
  token_ttl=1h \
  token_max_ttl=4h

# The Monite API credentials the rotator reads (monite.credentials_path).
# Run this yourself, typing the secret at the prompt rather than on a command line:
#   vault kv put secret/monite/api-credentials client_id=<uuid> client_secret=-
