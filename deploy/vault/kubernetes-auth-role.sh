#!/usr/bin/env bash
# kubernetes-auth-role.sh: an example of the Vault side of a Kubernetes
# deployment. Creates the policy and a Kubernetes-auth role that lets pods of
# the service account "monite-secret-rotator" in namespace
# "monite-secret-rotator" log in with a token projected for the "vault"
# audience (see deploy/kubernetes/base/deployment.yaml).
#
# Run with a Vault token allowed to write policies and auth roles, for example:
#   VAULT_ADDR=https://vault.example.com:8200 ./deploy/vault/kubernetes-auth-role.sh
# Read it before running it: it is a starting point, not an installer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
namespace="${NAMESPACE:-monite-secret-rotator}"
auth_mount="${AUTH_MOUNT:-kubernetes}"

vault policy write monite-secret-rotator "${here}/policy.hcl"

# Once per cluster, if the Kubernetes auth method is not set up yet (Vault
# running inside the cluster can use its own service account for TokenReview):
#   vault auth enable -path="${auth_mount}" kubernetes
#   vault write "auth/${auth_mount}/config" kubernetes_host=https://kubernetes.default.svc:443

# - bound_service_account_*: only this service account in this namespace.
# - audience: only tokens minted for Vault, not the pod's API-server token.
# - token_ttl=1h: a stolen Vault token is useful for an hour at most; the
#   rotator logs in again with a fresh projected token when it expires.
# - token_policies: nothing but the rotator's policy (plus "default").
# (Older Vault releases spell token_policies and token_ttl as policies and ttl.)
vault write "auth/${auth_mount}/role/monite-secret-rotator" \
  bound_service_account_names=monite-secret-rotator \
  bound_service_account_namespaces="${namespace}" \
  audience=vault \
  token_policies=monite-secret-rotator \
  token_ttl=1h \
  token_max_ttl=4h

# The Monite API credentials the rotator reads (monite.credentials_path).
# Run this yourself, typing the secret at the prompt rather than on a command line:
#   vault kv put secret/monite/api-credentials client_id=<uuid> client_secret=-
