"""The settings of the two services the daemon talks to: [monite] and [vault].

Each group checks its own keys together: Monite credentials given once (or
read from Vault), Vault's auth method complete and nothing set for another
method, TLS client certificate and key as a pair.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rotator.config._messages import MISSING_HINTS, Problem
from rotator.config._types import (
    Burst,
    Group,
    PageLimit,
    PageSize,
    PoolSize,
    PositiveDuration,
    Rate,
    Retries,
    api_date,
    http_url,
    kv_path,
    loading,
    lower,
    optional_kv_path,
    secret_text,
    to_optional_secret,
    to_secret,
)
from rotator.secret import Secret

DEFAULT_JWT_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# Keys that only mean something for one auth method: setting one for another
# method is a mistake worth stopping for (the operator expected it to be used).
METHOD_KEYS: Mapping[str, str] = {
    "token": "token",
    "role_id": "approle",
    "secret_id": "approle",
    "role": "kubernetes",
    "jwt_file": "kubernetes",
}


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class MoniteSettings(Group):
    base_url: Annotated[str, AfterValidator(http_url("https://api.sandbox.monite.com/v1"))] = (
        "https://api.sandbox.monite.com/v1"
    )
    api_version: Annotated[str, AfterValidator(api_date)] = "2024-05-25"
    # Empty only while credentials_path names where the real ones are; the
    # engine fills them from Vault before any client sees them.
    client_id: str = ""
    client_secret: Annotated[Secret, BeforeValidator(to_secret)] = Secret("")
    credentials_path: Annotated[str | None, AfterValidator(optional_kv_path)] = None
    timeout: PositiveDuration = timedelta(seconds=10)  # per request
    max_retries: Retries = 4  # retries after the first attempt, per request
    page_size: PageSize = 100
    max_pages: PageLimit = 1000
    # Client-side limit, requests per second for all callers together. Monite allows
    # 30/s by default (less in sandbox); a little headroom means steady work never
    # meets a 429. A 429 or RateLimit-Remaining: 0 still pauses every caller.
    rate_limit: Rate = 29.0
    rate_burst: Burst = 1

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str, info: ValidationInfo) -> str:
        value = secret_text(value)  # it may come from a file or a credential, like the secret
        # Emulators and tests use readable ids; real Monite client ids are UUIDs.
        if loading(info) and _UUID.fullmatch(value) is None:
            raise ValueError(
                "must be a UUID (the API client id from the Monite partner portal), "
                "like 3fa85f64-5717-4562-b3fc-2c963f66afa6"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        given = [k for k in ("client_id", "client_secret") if k in self.model_fields_set]
        if self.credentials_path is not None:
            if given:
                raise Problem(
                    ("credentials_path",),
                    f"set monite.credentials_path or monite.{given[0]}, not both; the "
                    "credentials come from Vault when credentials_path is set, so remove "
                    f"monite.{given[0]} (or its file, variable or systemd credential)",
                )
            return self
        for key in ("client_id", "client_secret"):
            if key not in self.model_fields_set:
                raise Problem((key,), MISSING_HINTS[("monite", key)])
        return self


class VaultSettings(Group):
    address: Annotated[str, AfterValidator(http_url("https://vault.example:8200"))]
    auth_method: Annotated[Literal["token", "approle", "kubernetes"], BeforeValidator(lower)] = (
        "token"
    )
    # Where the login method is mounted, without "auth/"; default: the method's name.
    auth_mount: Annotated[str | None, AfterValidator(optional_kv_path)] = None
    token: Annotated[Secret | None, BeforeValidator(to_optional_secret)] = None
    role_id: Annotated[Secret | None, BeforeValidator(to_optional_secret)] = None
    secret_id: Annotated[Secret | None, BeforeValidator(to_optional_secret)] = None
    role: str | None = None  # the Vault Kubernetes auth role
    # Read at every login: the kubelet rotates projected service account tokens.
    jwt_file: Path = DEFAULT_JWT_FILE
    namespace: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    mount: Annotated[str, AfterValidator(kv_path)] = "secret"
    path_prefix: Annotated[str, AfterValidator(kv_path)] = "monite/webhooks"
    timeout: PositiveDuration = timedelta(seconds=10)
    max_retries: Retries = 4
    # hvac clients are not thread-safe: one per worker thread, this many threads.
    pool_size: PoolSize = 8

    @property
    def login_mount(self) -> str:
        """The auth mount logins go to: `auth_mount`, else the method's own name."""
        return self.auth_mount or self.auth_method

    @field_validator("namespace", "role")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("ca_cert")
    @classmethod
    def _ca_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and loading(info) and not value.is_file():
            raise ValueError(f"file {value} does not exist; give the path of a PEM CA bundle")
        return value

    @field_validator("client_cert", "client_key")
    @classmethod
    def _client_tls(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and loading(info) and not value.is_file():
            what = "certificate" if info.field_name == "client_cert" else "private key"
            raise ValueError(f"file {value} does not exist; give the path of the PEM client {what}")
        return value

    @model_validator(mode="after")
    def _auth_complete(self, info: ValidationInfo) -> Self:
        method = self.auth_method
        for key, owner in METHOD_KEYS.items():
            if owner != method and key in self.model_fields_set and getattr(self, key) is not None:
                raise Problem(
                    (key,),
                    f"only used when auth_method is {owner} (it is {method}); remove it, or "
                    f'set vault.auth_method = "{owner}"',
                )
        if self.auth_mount is not None and method == "token":
            raise Problem(
                ("auth_mount",),
                "only used when auth_method is approle or kubernetes (token auth is always "
                "at auth/token); remove it",
            )
        if (self.client_cert is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_cert"
            given = "client_cert" if missing == "client_key" else "client_key"
            raise Problem(
                (missing,),
                f"required with vault.{given}: TLS client authentication needs both the "
                f"certificate and its key; set vault.{missing} (or VAULT_{missing.upper()}) "
                f"or remove vault.{given}",
            )
        if not loading(info):
            return self
        if method == "token" and self.token is None:
            raise Problem(
                ("token",),
                "required when auth_method is token; set VAULT_TOKEN, vault.token_file, "
                "a systemd credential named vault_token, or run `vault login` for ~/.vault-token",
            )
        if method == "approle":
            if self.role_id is None:
                raise Problem(
                    ("role_id",),
                    "required when auth_method is approle; set role_id in [vault], "
                    "vault.role_id_file, ROTATOR_VAULT__ROLE_ID or a systemd credential "
                    "named vault_role_id (from `vault read auth/approle/role/NAME/role-id`)",
                )
            if self.secret_id is None:
                raise Problem(
                    ("secret_id",),
                    "required when auth_method is approle; set vault.secret_id_file, "
                    "ROTATOR_VAULT__SECRET_ID or a systemd credential named vault_secret_id "
                    "(from `vault write -f auth/approle/role/NAME/secret-id`)",
                )
        if method == "kubernetes":
            if self.role is None:
                raise Problem(
                    ("role",),
                    "required when auth_method is kubernetes; set role in [vault] or "
                    "ROTATOR_VAULT__ROLE to the Vault Kubernetes auth role bound to this "
                    "service account",
                )
            if not self.jwt_file.is_file():
                raise Problem(
                    ("jwt_file",),
                    f"file {self.jwt_file} does not exist; mount the service account token "
                    "(automountServiceAccountToken or a projected volume) or set vault.jwt_file",
                )
        return self
