-- The Responses and Messages APIs (issue 14): cache-write and long-context prices, and the API of
-- each usage row. Money columns are micro-units per 1,000,000 tokens, like 0003's; the price
-- arithmetic is core/billing/tiers.rs (docs/money.md, docs/agents.md).

-- ---- price versions: cache writes by lifetime and a long-context tier --------------------------
-- Versioned with the other prices: a change is a new price_versions row, and a usage row keeps
-- the version it was billed at.
ALTER TABLE price_versions ADD COLUMN cache_write_5m_price INTEGER CHECK (cache_write_5m_price >= 0);   -- NULL = input_price
ALTER TABLE price_versions ADD COLUMN cache_write_1h_price INTEGER CHECK (cache_write_1h_price >= 0);   -- NULL = input_price
-- A request whose prompt (cache reads and writes included) is ABOVE long_context_threshold tokens
-- is charged entirely at the long_* prices; NULL threshold = no tier. NULL long_* prices fall back
-- like the base ones (cached → long input, reasoning → long output, writes → long input).
ALTER TABLE price_versions ADD COLUMN long_context_threshold INTEGER CHECK (long_context_threshold > 0);
ALTER TABLE price_versions ADD COLUMN long_input_price INTEGER CHECK (long_input_price >= 0);
ALTER TABLE price_versions ADD COLUMN long_cached_input_price INTEGER CHECK (long_cached_input_price >= 0);
ALTER TABLE price_versions ADD COLUMN long_output_price INTEGER CHECK (long_output_price >= 0);
ALTER TABLE price_versions ADD COLUMN long_reasoning_price INTEGER CHECK (long_reasoning_price >= 0);
ALTER TABLE price_versions ADD COLUMN long_cache_write_5m_price INTEGER CHECK (long_cache_write_5m_price >= 0);
ALTER TABLE price_versions ADD COLUMN long_cache_write_1h_price INTEGER CHECK (long_cache_write_1h_price >= 0);

-- ---- usage rows ---------------------------------------------------------------------------------
-- The client API of the request (`usage.api`: chat | responses | messages | embeddings | …) and
-- its index came with 0012.
-- Billed cache writes, parts of prompt_tokens (like cached_prompt_tokens, which are cache reads).
ALTER TABLE usage ADD COLUMN cache_write_5m_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
-- 1 when the long-context tier of the price version priced the request.
ALTER TABLE usage ADD COLUMN long_context INTEGER NOT NULL DEFAULT 0;

-- Reports by api read raw rows (the daily rollups are not kept per api; index from 0012).
