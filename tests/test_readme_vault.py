"""The README's Vault commands, run as written with OpenBao's CLI, leave a Vault `check` accepts.

Every line of the README that starts with `vault ` is run by bash against the
test session's OpenBao server, with `vault` being OpenBao's `bao` binary; the
token `rotator check` then uses holds only the policy the README installed
(no `default` policy), and the Monite credentials come from the path the
README wrote.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from rotator.sandbox.monite import MoniteEmulator
from tests.conftest import remember_output
from tests.daemon_harness import run_rotator, toml
from tests.openbao import OpenBaoVault, bao_binary

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def readme_vault_commands() -> list[str]:
    """The README's shell lines that call the vault CLI, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("vault "):
                commands.append(line.split("  #")[0].strip())
    return commands


def test_the_readme_names_the_vault_commands_it_documents() -> None:
    """The README installs the policy and writes the Monite credentials with the vault CLI."""
    assert [
        "vault policy write monite-secret-rotator deploy/vault/policy.hcl",
        "vault kv put secret/monite/api-credentials client_id=<uuid> client_secret=-",
    ] == readme_vault_commands()


def test_readme_vault_steps_on_openbao_pass_check_with_only_that_policy(
    tmp_path: Path, openbao: OpenBaoVault, monite: MoniteEmulator
) -> None:
    """The README's commands, run with bao, give a Vault that `rotator check` accepts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vault").symlink_to(bao_binary())
    client_id, client_secret = monite.credentials
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    environ.update(
        PATH=f"{bin_dir}{os.pathsep}{environ.get('PATH', '')}",
        VAULT_ADDR=openbao.address,
        VAULT_TOKEN=openbao.root_token,
        HOME=str(tmp_path),
    )
    for command in readme_vault_commands():
        script = command.replace("<uuid>", client_id)
        result = subprocess.run(
            ["bash", "-c", script],  # bash from PATH, as a reader runs it
            cwd=ROOT,
            input=client_secret,  # `client_secret=-` reads the secret from stdin
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )
        remember_output(result.stdout, result.stderr)
        assert 0 == result.returncode, f"{command}: {result.stderr}"

    token = openbao.create_token(policies=["monite-secret-rotator"], no_default_policy=True)
    token_file = tmp_path / "vault_token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = tmp_path / "rotator.toml"
    config.write_text(
        toml(
            {
                "monite": {
                    "base_url": monite.base_url,
                    "credentials_path": "monite/api-credentials",
                },
                "vault": {"address": openbao.address, "token_file": str(token_file)},
                "policy": {"max_age": "30d"},
            }
        )
    )
    check = run_rotator("check", "--config", str(config))
    assert (0, "") == (check.returncode, check.stderr), check.stdout
    assert check.stdout.startswith("ok: "), check.stdout
    assert "note:" not in check.stdout  # the capabilities were asked, not guessed
