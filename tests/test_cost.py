"""Prices per model, tokens turned into an estimated cost, and AI_PRICES checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from project_orchestrator.projects.cost import DEFAULT_PRICES, Cost, PriceList, Usage
from tests.conftest import make_settings


def test_a_model_is_priced_by_the_longest_key_its_name_starts_with() -> None:
    prices = PriceList.with_overrides({})
    assert prices.price_of("claude-sonnet-4-6") == DEFAULT_PRICES["claude-sonnet-4"]
    assert prices.price_of("claude-opus-4-5-20251101") == DEFAULT_PRICES["claude-opus-4-5"]
    assert prices.price_of("claude-opus-4-20250514") == DEFAULT_PRICES["claude-opus-4"]
    assert prices.price_of("llama-3.1-70b") is None


def test_cost_counts_input_output_and_cache_at_their_rates() -> None:
    prices = PriceList.with_overrides({})
    usage = Usage("claude-sonnet-4-6", 1_000_000, 100_000, 2_000_000, 400_000)
    cost = prices.cost([usage])
    # 3 input + 1.5 output + 2 * 0.3 cache read + 0.4 * 3.75 cache write
    assert cost.tokens == 3_500_000
    assert cost.dollars == pytest.approx(6.6)
    assert cost.words() == "3,500,000 AI tokens (about $6.60)"


def test_an_operator_price_overrides_and_adds_models() -> None:
    prices = PriceList.with_overrides(
        {
            "claude-sonnet-4": {"input": 2, "output": 10},
            "llama": {"input": 0, "output": 0, "cache_read": 0},
        }
    )
    assert prices.cost([Usage("claude-sonnet-4-6", 1_000_000, 0)]).dollars == 2
    assert prices.cost([Usage("llama-3.1", 5, 5)]) == Cost(10, 0.0)


def test_a_model_without_a_price_makes_the_estimate_unknown_not_wrong() -> None:
    prices = PriceList.with_overrides({})
    cost = prices.cost([Usage("claude-haiku-4-5", 10, 10), Usage("mystery-7b", 5, 5)])
    assert cost == Cost(30, None, ("mystery-7b",))
    assert cost.words() == "30 AI tokens (cost unknown for mystery-7b)"
    # A model that was named but used nothing does not spoil the estimate.
    assert prices.cost([Usage("mystery-7b")]).dollars == 0


def test_small_amounts_read_as_under_a_cent() -> None:
    assert Cost(100, 0.0004).dollar_words() == "under $0.01"
    assert Cost(0, 0.0).dollar_words() == "about $0.00"


def test_ai_prices_are_read_as_json_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_PRICES", '{"local": {"input": 0.5, "output": 1}}')
    assert make_settings(tmp_path).ai_prices == {"local": {"input": 0.5, "output": 1.0}}
    for bad in (
        '{"local": {"input": 1}}',
        '{"local": {"input": 1, "output": 1, "tip": 2}}',
        '{"local": {"input": -1, "output": 1}}',
        '{" ": {"input": 1, "output": 1}}',
    ):
        monkeypatch.setenv("AI_PRICES", bad)
        with pytest.raises(ValidationError, match=r"AI_PRICES|model name"):
            make_settings(tmp_path)
