-- Media endpoints (issue 15): prices with units, a model's kind, and usage rows that say what
-- they metered. See docs/media.md and src/core/billing/units.rs.
-- Every column is added with a default that keeps the rows written before this migration (chat,
-- billed on tokens) meaning what they meant.

-- ---- prices: versioned like the token prices --------------------------------------------------
-- A change of any of these inserts a new price_versions row, as for token prices.
ALTER TABLE price_versions ADD COLUMN image_input_price INTEGER CHECK (image_input_price >= 0);   -- per 1M image input tokens; NULL = input_price
ALTER TABLE price_versions ADD COLUMN audio_input_price INTEGER CHECK (audio_input_price >= 0);   -- per 1M audio input tokens; NULL = input_price
ALTER TABLE price_versions ADD COLUMN image_prices TEXT;                                          -- JSON [{size, quality, price}], micro-units per image; NULL = images billed on tokens
ALTER TABLE price_versions ADD COLUMN character_price INTEGER CHECK (character_price >= 0);       -- per 1M characters of speech input; NULL = speech billed on tokens
ALTER TABLE price_versions ADD COLUMN minute_price INTEGER CHECK (minute_price >= 0);             -- per minute of audio (whole seconds, rounded up); NULL = transcription billed on tokens

-- ---- models: what a model is for -----------------------------------------------------------------
-- /v1/models lists it; a model is served only on the endpoints of its kind.
ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat'
  CHECK (kind IN ('chat', 'embedding', 'image', 'tts', 'stt'));

-- ---- usage rows: the API called and the quantity metered -------------------------------------------
ALTER TABLE usage ADD COLUMN api TEXT NOT NULL DEFAULT 'chat';                 -- chat | embeddings | images | speech | transcriptions (and the inbound APIs)
ALTER TABLE usage ADD COLUMN unit TEXT NOT NULL DEFAULT 'tokens';              -- tokens | images | characters | seconds
ALTER TABLE usage ADD COLUMN quantity INTEGER NOT NULL DEFAULT 0;              -- in `unit`; for tokens: prompt + completion
ALTER TABLE usage ADD COLUMN unit_price INTEGER;                               -- micro-units per image / 1M characters / minute; NULL for tokens (price_version has them)
ALTER TABLE usage ADD COLUMN image_input_tokens INTEGER NOT NULL DEFAULT 0;    -- billed, part of prompt_tokens
ALTER TABLE usage ADD COLUMN audio_input_tokens INTEGER NOT NULL DEFAULT 0;    -- billed, part of prompt_tokens
CREATE INDEX usage_tenant_api_time ON usage(tenant_id, api, created_at);
