"""What the AI cost: a price per model, and tokens turned into an estimated amount.

Prices are US dollars per million tokens, Anthropic's published list prices; operators
override or add models with `AI_PRICES` (a JSON object keyed by model name or prefix).
A model is priced by the longest key its name starts with (the operator's keys before the
published ones), so `claude-sonnet-4` covers every Sonnet 4 release; a model no key covers
has no estimate ("unknown"), never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field

PER_TOKENS = 1_000_000
# Anthropic bills a cache write at 1.25 times the input price and a cache read at 0.1.
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(input=5, output=25),
    "claude-opus-4-5": ModelPrice(input=5, output=25),
    "claude-opus-4-1": ModelPrice(input=15, output=75),
    "claude-opus-4": ModelPrice(input=15, output=75),
    "claude-sonnet-4": ModelPrice(input=3, output=15),
    "claude-3-7-sonnet": ModelPrice(input=3, output=15),
    "claude-3-5-sonnet": ModelPrice(input=3, output=15),
    "claude-haiku-4": ModelPrice(input=1, output=5),
    "claude-3-5-haiku": ModelPrice(input=0.8, output=4),
    "claude-3-haiku": ModelPrice(input=0.25, output=1.25),
}


@dataclass(frozen=True)
class Usage:
    """Tokens one model used (for a run, a project, a period)."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@dataclass(frozen=True)
class Cost:
    tokens: int
    # None when a model used has no price: the estimate would be a guess.
    dollars: float | None
    unpriced_models: tuple[str, ...] = ()

    def words(self) -> str:
        """'12,345 AI tokens (about $0.08)', for a person."""
        return f"{self.tokens:,} AI tokens ({self.dollar_words()})"

    def dollar_words(self) -> str:
        if self.dollars is None:
            return f"cost unknown for {', '.join(self.unpriced_models)}"
        if 0 < self.dollars < 0.01:
            return "under $0.01"
        return f"about ${self.dollars:,.2f}"


@dataclass(frozen=True)
class PriceList:
    # The operator's prices come first: any key of theirs that fits the model wins over
    # the published ones, even a shorter one ("claude-haiku" over "claude-haiku-4").
    operators: Mapping[str, ModelPrice]
    published: Mapping[str, ModelPrice]

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Mapping[str, float]]) -> PriceList:
        """The published prices, with the operator's (AI_PRICES) over them."""
        mine = {model: ModelPrice.model_validate(price) for model, price in overrides.items()}
        return cls(mine, DEFAULT_PRICES)

    def price_of(self, model: str) -> ModelPrice | None:
        for prices in (self.operators, self.published):
            keys = [key for key in prices if model.startswith(key)]
            if keys:
                return prices[max(keys, key=len)]
        return None

    def cost(self, usages: Iterable[Usage]) -> Cost:
        tokens, dollars, unpriced = 0, 0.0, []
        for usage in usages:
            tokens += usage.total
            price = self.price_of(usage.model)
            if price is None:
                if usage.total:
                    unpriced.append(usage.model)
                continue
            cache_read = price.cache_read
            cache_write = price.cache_write
            dollars += (
                usage.input_tokens * price.input
                + usage.output_tokens * price.output
                + usage.cache_read_tokens
                * (price.input * CACHE_READ_FACTOR if cache_read is None else cache_read)
                + usage.cache_write_tokens
                * (price.input * CACHE_WRITE_FACTOR if cache_write is None else cache_write)
            ) / PER_TOKENS
        if unpriced:
            return Cost(tokens, None, tuple(sorted(set(unpriced))))
        return Cost(tokens, round(dollars, 6))
