"""Secrets from files: `*_file` keys, systemd credentials, ~/.vault-token; exposed files reported.

A secret file holds one value on one line; the whitespace around it is
dropped. Files others may read are collected as `ExposedFile` for a warning,
never refused (Kubernetes mounts Secrets 0644 unless told otherwise).
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from rotator.config._connections import METHOD_KEYS, VaultSettings
from rotator.config._files import SECRET_FILE_LIMIT, SHARED_BITS, Unreadable, read_capped, size_text
from rotator.config._keys import SECRET_SOURCES
from rotator.config._layers import Raw
from rotator.config._messages import Origins
from rotator.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ExposedFile:
    """A secret file that users other than its owner may read or write.

    Worth a warning, not a refusal: Kubernetes mounts Secrets 0644 unless told
    otherwise. Carries the file's name and mode, never its content.
    """

    # What named the file, as in error messages: "vault.token_file",
    # "monite.client_secret (from systemd credential monite_client_secret)".
    setting: str
    path: str
    mode: int

    def audit_fields(self) -> dict[str, str]:
        """The fields of the `config.secret_file_exposed` audit event."""
        can: list[str] = []
        for who, shift in (("group", 3), ("others", 0)):
            rights = [
                right
                for right, bit in (("read", 0o4), ("write", 0o2))
                if self.mode & (bit << shift)
            ]
            if rights:
                can.append(f"{who} can {' and '.join(rights)} it")
        return {
            "setting": self.setting,
            "file": self.path,
            "mode": f"{stat.S_IMODE(self.mode):04o}",
            "access": "; ".join(can),
            "fix": f"chmod 600 {self.path}, or mount the Kubernetes Secret with defaultMode 0400",
        }


def _read_secret(
    path: Path, key: str, origin: str | None, exposed: list[ExposedFile] | None = None
) -> str:
    where = f"{key}{f' (from {origin})' if origin else ''}"
    try:
        data, mode = read_capped(path, SECRET_FILE_LIMIT)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: file {path} does not exist; create it or fix the path"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: {path} is a directory; point it at a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: file {path} is not UTF-8 text") from None
    except Unreadable as exc:
        raise ConfigError(
            f"{where}: file {path} {exc}; a secret file is a regular file holding only the "
            f"value (at most {size_text(SECRET_FILE_LIMIT)}): fix the path"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{where}: file {path} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    if exposed is not None and mode & SHARED_BITS:
        exposed.append(ExposedFile(where, str(path), mode))
    # Editors, `echo` and `kubectl create secret --from-file` leave a newline
    # (or spaces) around the value: dropped, as for every other source. A line
    # break inside is a malformed file, and sending it to Monite or Vault would
    # fail far from here; other control characters are refused by validation.
    text = text.strip()
    if not text:
        raise ConfigError(f"{where}: file {path} is empty; write the value into it")
    if "\n" in text or "\r" in text:
        raise ConfigError(f"{where}: file {path} has more than one line; keep only the value")
    return text


def _used(raw: Raw, group: str, key: str) -> bool:
    """Whether the implicit sources (systemd credentials, VAULT_TOKEN) should fill `key`.

    A credential lying in $CREDENTIALS_DIRECTORY, or a VAULT_TOKEN left in a
    shell, must not turn into a conflict for a method that does not use it.
    """
    if group == "monite":
        return raw["monite"].get("credentials_path") is None
    owner = METHOD_KEYS.get(key)
    method = raw["vault"].get("auth_method", "token")
    return owner is None or owner == (method.lower() if isinstance(method, str) else method)


def resolve_secrets(
    raw: Raw, origins: Origins, environ: Mapping[str, str], exposed: list[ExposedFile]
) -> None:
    if origins.get(("vault", "token")) == "VAULT_TOKEN" and not _used(raw, "vault", "token"):
        del raw["vault"]["token"]
        del origins[("vault", "token")]
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    for group, key, file_key, credential in SECRET_SOURCES:
        table = raw[group]
        if file_key in table:
            location = table.pop(file_key)
            origin = origins.pop((group, file_key), None)
            if not isinstance(location, str) or not location:
                suffix = f" (from {origin})" if origin else ""
                raise ConfigError(f"{group}.{file_key}{suffix}: must be a file path string")
            table[key] = _read_secret(Path(location), f"{group}.{file_key}", origin, exposed)
            origins[(group, key)] = f"file {location}"
            continue
        if key in table or not credentials or not _used(raw, group, key):
            continue
        path = Path(credentials) / credential
        if path.exists():
            table[key] = _read_secret(
                path, f"{group}.{key}", f"systemd credential {credential}", exposed
            )
            origins[(group, key)] = f"systemd credential {path}"

    vault = raw["vault"]
    home = environ.get("HOME")
    if "token" not in vault and home and _used(raw, "vault", "token"):
        path = Path(home) / ".vault-token"
        if path.is_file():
            vault["token"] = _read_secret(path, "vault.token", str(path), exposed)
            origins[("vault", "token")] = f"file {path}"


# A hook key shorter than this is guessable; `openssl rand -hex 32` gives 64 characters.
HOOK_KEY_MIN: Final = 32


def resolve_hook_secrets(
    hooks: list[dict[str, Any]], exposed: list[ExposedFile]
) -> list[dict[str, Any]]:
    """Each [[hooks]] table with its `secret_file` read into `secret` (kept beside its path)."""
    resolved: list[dict[str, Any]] = []
    for index, hook in enumerate(hooks):
        table = dict(hook)
        location = table.get("secret_file")
        if location is not None:
            key = f"hooks[{index}].secret_file"
            if not isinstance(location, str) or not location:
                raise ConfigError(f"{key}: must be a file path string")
            secret = _read_secret(Path(location), key, None, exposed)
            if len(secret) < HOOK_KEY_MIN:
                raise ConfigError(
                    f"{key}: the key in {location} is shorter than {HOOK_KEY_MIN} characters, "
                    f"too easy to guess; write a random one (openssl rand -hex 32 > {location})"
                )
            table["secret"] = secret
        resolved.append(table)
    return resolved


def exposed_key_files(vault: VaultSettings) -> list[ExposedFile]:
    """The secret files others read later (the service account token, the TLS client key)."""
    named: list[tuple[str, Path]] = []
    if vault.auth_method == "kubernetes":
        named.append(("vault.jwt_file", vault.jwt_file))
    if vault.client_key is not None:
        named.append(("vault.client_key", vault.client_key))
    found: list[ExposedFile] = []
    for setting, path in named:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # validation has seen it; reading it later says what is wrong
        if mode & SHARED_BITS:
            found.append(ExposedFile(setting, str(path), mode))
    return found
