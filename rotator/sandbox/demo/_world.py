"""The demo's world: Monite and Vault emulators, two example consumers, deliveries, seeds.

Every kind of subscription is seeded twice, once delivering to each consumer,
so the two ways of loading a rotated secret meet the same rotations:
- the timer consumer re-reads Vault every `POLL_EVERY` seconds and never on a
  mismatch, like a service reading the file Vault Agent renders;
- the hook consumer is told by the rotator's `[[hooks]]` notice after every
  commit. Neither re-reads Vault on a mismatch (`rotator.consumer`'s default
  does), so the difference on screen is the hook's alone.
The Monite emulator delivers a signed event to every enabled subscription
every `DELIVERY_EVERY` seconds and retries the rejected ones, as Monite does.

With `strategy="swap"` both consumers are timer consumers and the groups
differ in how their subscriptions are rotated instead: `SWAP`'s by the swap
strategy (`rotation.strategy = "swap"`, `OVERLAP`), `REGENERATE`'s by
regenerate (a rule on that consumer's URL sets `strategy = "regenerate"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal

from rotator.config import Settings, load_settings
from rotator.consumer.app import ConsumerApp, make_server
from rotator.model import Record
from rotator.policy import Rule
from rotator.sandbox.deliveries import DeliverySender, DeliverySnapshot, DeliveryStats
from rotator.sandbox.monite import MoniteEmulator
from rotator.sandbox.vault import VaultEmulator
from rotator.secret import Secret
from rotator.vault import VaultStore

MAX_AGE = timedelta(seconds=20)
STRICT_MAX_AGE = timedelta(seconds=10)  # the rule for batch payments
INTERVAL = 4.0  # seconds between cycles
DELIVERY_EVERY = 0.5  # seconds between delivery rounds
POLL_EVERY = 5.0  # the timer consumer's reload interval (Vault Agent's default is 5 minutes)
TIMER, HOOK = "timer", "hook"
# --strategy swap: two timer consumers, one group of subscriptions rotated each way.
SWAP, REGENERATE = "swap", "regenerate"
OVERLAP = timedelta(seconds=10)  # >= 2 x SWAP_CLAIM_TTL and 2 x POLL_EVERY, < MAX_AGE
SWAP_CLAIM_TTL = timedelta(seconds=4)  # the least 4 x monite.timeout (1s) allows
Strategy = Literal["regenerate", "swap"]

ROTATOR_POLICY_HCL = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/monite/webhooks" {
  capabilities = ["list"]
}
path "secret/metadata/monite/webhooks/*" {
  capabilities = ["read", "list"]
}
"""

# What a consumer needs: read the records, nothing else.
CONSUMER_POLICY_HCL = """
path "secret/data/monite/webhooks/*" {
  capabilities = ["read"]
}
"""


@dataclass(frozen=True)
class Kind:
    """A kind of subscription: its label, object type, status and secret age (None: no record)."""

    label: str
    object_type: str
    status: str
    age: timedelta | None


KINDS: tuple[Kind, ...] = (
    Kind("old", "payable", "enabled", timedelta(seconds=45)),
    Kind("old", "receivable", "enabled", timedelta(seconds=25)),
    Kind("fresh", "entity", "enabled", timedelta(seconds=8)),
    Kind("unmanaged", "approval", "enabled", None),
    Kind("disabled", "tag", "disabled", timedelta(seconds=40)),
    Kind("strict rule", "batch_payment", "enabled", timedelta(seconds=6)),
)


@dataclass(frozen=True)
class Row:
    """One seeded subscription and the consumer its deliveries go to."""

    subscription_id: str
    kind: Kind
    consumer: str  # TIMER or HOOK (SWAP or REGENERATE with --strategy swap)


class World:
    """The emulators, the consumers and the delivery sender; a context manager that stops all."""

    def __init__(self, workdir: Path, strategy: Strategy = "regenerate") -> None:
        self._workdir = workdir
        self.strategy: Strategy = strategy
        self.groups = (SWAP, REGENERATE) if strategy == "swap" else (TIMER, HOOK)
        self._stack = contextlib.ExitStack()
        self.monite = MoniteEmulator(rate_limit=50)
        self.vault = VaultEmulator()
        self.consumers: dict[str, ConsumerApp] = {}
        self.deliveries: DeliverySender | None = None
        self.config_path = workdir / "rotator.toml"

    def __enter__(self) -> World:
        self._stack.enter_context(self.monite)
        self._stack.enter_context(self.vault)
        self.vault.put_policy("consumer", CONSUMER_POLICY_HCL)
        consumer_token = self.vault.create_token(policies=["consumer"])
        if self.strategy == "swap":
            return self._enter_swap(consumer_token)
        hook_key = self._workdir / "hook-key"
        hook_key.write_text(secrets.token_hex(32) + "\n")
        hook_key.chmod(0o600)
        vault = self.vault.address
        self.consumers[TIMER] = make_server(
            vault_addr=vault,
            vault_token=consumer_token,
            poll_interval=POLL_EVERY,
            reread=False,
            name="timer-consumer",
        )
        self.consumers[HOOK] = make_server(
            vault_addr=vault,
            vault_token=consumer_token,
            hook_key_file=hook_key,
            reread=False,
            name="hook-consumer",
        )
        for app in self.consumers.values():
            app.start()
            self._stack.callback(app.stop)
        self.config_path.write_text(
            "[[hooks]]\n"
            f'url = "{self.consumers[HOOK].url}/rotated"\n'
            f'secret_file = "{hook_key}"\n'
            'timeout = "2s"\n'
        )
        return self

    def _enter_swap(self, consumer_token: str) -> World:
        """Two timer consumers alike (deduplication on, as `make_server` has it), no hook."""
        for group in self.groups:
            self.consumers[group] = make_server(
                vault_addr=self.vault.address,
                vault_token=consumer_token,
                poll_interval=POLL_EVERY,
                reread=False,
                name=f"{group}-consumer",
            )
            self.consumers[group].start()
            self._stack.callback(self.consumers[group].stop)
        self.config_path.write_text("# rotator demo --strategy swap: no hook\n")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_deliveries()
        self._stack.close()

    def environment(self) -> dict[str, str]:
        """The settings the demo runs with, as the environment a user would set."""
        client_id, client_secret = self.monite.add_client()
        self.vault.put_policy("rotator", ROTATOR_POLICY_HCL)
        token = self.vault.create_token(policies=["rotator"])
        return {
            "ROTATOR_MONITE__BASE_URL": self.monite.base_url,
            "ROTATOR_MONITE__CLIENT_ID": client_id,
            "ROTATOR_MONITE__CLIENT_SECRET": client_secret,
            "ROTATOR_MONITE__TIMEOUT": "1s",
            "VAULT_ADDR": self.vault.address,
            "VAULT_TOKEN": token,
            "ROTATOR_POLICY__MAX_AGE": f"{int(MAX_AGE.total_seconds())}s",
            "ROTATOR_SCHEDULE__INTERVAL": f"{int(INTERVAL)}s",
            "ROTATOR_ROTATION__CLAIM_TTL": "6s",
            "ROTATOR_LOG__FORMAT": "console",
        } | (self._swap_environment() if self.strategy == "swap" else {})

    def _swap_environment(self) -> dict[str, str]:
        return {
            "ROTATOR_ROTATION__STRATEGY": "swap",
            "ROTATOR_ROTATION__OVERLAP": f"{int(OVERLAP.total_seconds())}s",
            "ROTATOR_ROTATION__CLAIM_TTL": f"{int(SWAP_CLAIM_TTL.total_seconds())}s",
        }

    def settings(self) -> Settings:
        """The config file (its one hook) and the environment, plus a rule for batch payments."""
        settings = load_settings(self.config_path, self.environment())
        rules: tuple[Rule, ...] = (Rule(object_type="batch_payment", max_age=STRICT_MAX_AGE),)
        if self.strategy == "swap":
            # The first matching rule wins: the regenerate group's batch payments need both.
            regenerated = f"{self.consumers[REGENERATE].url}/*"
            rules = (
                Rule(
                    object_type="batch_payment",
                    url=regenerated,
                    max_age=STRICT_MAX_AGE,
                    strategy="regenerate",
                ),
                Rule(url=regenerated, strategy="regenerate"),
                *rules,
            )
        policy = dataclasses.replace(settings.policy, rules=rules)
        return settings.model_copy(update={"policy": policy})

    def kinds(self) -> tuple[Kind, ...]:
        """What is seeded for each group; the swap demo leaves the unmanaged kind out, since
        taking a subscription under management regenerates it whatever the strategy."""
        if self.strategy == "swap":
            return tuple(kind for kind in KINDS if kind.age is not None)
        return KINDS

    def read_record(self, settings: Settings, subscription_id: str) -> Record | None:
        """The subscription's record as Vault holds it now (None: no record)."""
        vault = settings.vault
        found = self.vault.kv_read(vault.mount, f"{vault.path_prefix}/{subscription_id}")
        return None if found is None else Record.from_vault(subscription_id, *found)

    async def seed(self, settings: Settings, now: datetime) -> list[Row]:
        """Every kind once per consumer and, for the managed ones, their Vault records."""
        store = VaultStore(settings.vault)
        rows = []
        try:
            for kind in self.kinds():
                for consumer in self.groups:
                    url = f"{self.consumers[consumer].url}/webhooks"
                    sid = self.monite.seed(
                        url=url,
                        object_type=kind.object_type,
                        status=kind.status,
                        event_types=("created", "updated"),
                    )
                    rows.append(Row(sid, kind, consumer))
                    if kind.age is not None:
                        record = Record(
                            subscription_id=sid,
                            secret=Secret(self.monite.current_secret(sid)),
                            rotated_at=now - kind.age,
                            url=url,
                            object_type=kind.object_type,
                        )
                        await store.write(record, cas=0)
        finally:
            store.close()
        return rows

    def start_deliveries(self) -> None:
        """Signed events to every enabled subscription from now on, retried when rejected."""
        self.deliveries = DeliverySender(self.monite, every=DELIVERY_EVERY)
        self.deliveries.start()

    def stop_deliveries(self) -> DeliverySnapshot:
        """Stop sending (pending retries are abandoned); what was delivered and rejected."""
        if self.deliveries is None:
            return DeliverySnapshot(DeliveryStats(), {}, ())
        self.deliveries.stop()
        return self.deliveries.snapshot()
