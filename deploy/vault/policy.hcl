# policy.hcl: the least privilege monite-secret-rotator needs in Vault.
# Install: vault policy write monite-secret-rotator deploy/vault/policy.hcl
#
# Written for the defaults: KV v2 mounted at "secret", records under
# "monite/webhooks", Monite API credentials at "monite/api-credentials".
# If you change vault.mount, vault.path_prefix or monite.credentials_path,
# change the paths here to match.

# The records: one per subscription. "create" for the first write (cas=0) of a
# subscription taken under management, "update" for claims and commits (both
# check-and-set), "read" for the record and its version. No "delete": the
# rotator never removes a record, and no "patch": it writes whole versions.
path "secret/data/monite/webhooks/*" {
  capabilities = ["create", "read", "update"]
}

# Listing records (to find orphans and fill the cache) and reading their
# version metadata. A LIST on the prefix itself is checked as
# "secret/metadata/monite/webhooks/", which this glob covers.
path "secret/metadata/monite/webhooks/*" {
  capabilities = ["list", "read"]
}

# The Monite API client id and secret, when monite.credentials_path is used,
# so no Monite credential sits in a config file. Read only: rotating the API
# credentials themselves is a human's job.
path "secret/data/monite/api-credentials" {
  capabilities = ["read"]
}

# Token lifecycle. Vault's built-in "default" policy grants these too; they are
# repeated here so the rotator still works with a role that sets
# token_no_default_policy=true.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

# `rotator check` (and the daemon at start) asks Vault which of the capabilities
# above the token holds, instead of guessing from a refused call, and names any
# that is missing. This reveals the token's own capabilities and nothing else;
# "default" grants it too, repeated here for token_no_default_policy=true roles.
path "sys/capabilities-self" {
  capabilities = ["update"]
}
