"""The [policy] table as given, turned into the pure rotator.policy dataclasses.

Rules come as [[policy.rules]] tables or, from the environment, as one JSON array.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from rotator.config._messages import Problem, suggest
from rotator.config._schema import DEFAULT_POLICY
from rotator.config._types import Group, PositiveDuration, optional_positive, to_optional_duration
from rotator.model import MONITE_OBJECT_TYPES
from rotator.policy import Policy, Rule


class RuleInput(Group):
    object_type: str | None = None
    subscription_id: str | None = None
    url: str | None = None
    max_age: Annotated[
        timedelta | None,
        BeforeValidator(to_optional_duration),
        AfterValidator(optional_positive),
    ] = None
    skip: bool = False
    # How matching subscriptions are rotated, overriding rotation.strategy.
    strategy: Literal["regenerate", "swap"] | None = None

    @field_validator("object_type")
    @classmethod
    def _object_type(cls, value: str | None) -> str | None:
        if value is not None and value not in MONITE_OBJECT_TYPES:
            hint = suggest(value, MONITE_OBJECT_TYPES) or "; see Monite's WebhookObjectType"
            raise ValueError(f"{value!r} is not a Monite webhook object type{hint}")
        return value

    @field_validator("subscription_id", "url")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.object_type is None and self.subscription_id is None and self.url is None:
            raise Problem(
                (), "needs at least one matcher: object_type, subscription_id or url (a glob)"
            )
        if self.skip and (self.max_age is not None or self.strategy is not None):
            raise Problem(
                (),
                "sets skip = true and also max_age or strategy; a skipped subscription "
                "is never rotated, so drop one of them",
            )
        if self.max_age is None and not self.skip and self.strategy is None:
            raise Problem(
                (), 'needs an effect: max_age (like "7d"), strategy ("swap") or skip = true'
            )
        return self

    def to_rule(self) -> Rule:
        return Rule(
            object_type=self.object_type,
            subscription_id=self.subscription_id,
            url=self.url,
            max_age=self.max_age,
            skip=self.skip,
            strategy=self.strategy,
        )


def _rules_from_env(value: object) -> object:
    # The environment can only carry strings: rules come as one JSON array.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise ValueError(
                'must be a JSON array of rule tables, like [{"object_type": "payable", '
                '"max_age": "7d"}]'
            ) from None
    return value


class PolicyInput(Group):
    max_age: PositiveDuration = DEFAULT_POLICY.max_age
    unmanaged: Literal["rotate", "skip"] = "rotate"
    include_disabled: bool = False
    rules: Annotated[list[RuleInput], BeforeValidator(_rules_from_env)] = Field(
        default_factory=list
    )

    def to_policy(self) -> Policy:
        return Policy(
            max_age=self.max_age,
            unmanaged=self.unmanaged,
            include_disabled=self.include_disabled,
            rules=tuple(rule.to_rule() for rule in self.rules),
        )
