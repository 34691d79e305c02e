-- The built-in demo model: answers inside the gateway, so a fresh install works with no provider key.
-- Priced like a real model (1.00 per 1M prompt tokens, 2.00 per 1M completion tokens) so metering shows.
INSERT INTO providers (name, kind, base_url, api_key_secret, config, updated_at)
VALUES ('builtin', 'echo', 'builtin:', NULL, NULL, 0);
INSERT INTO models (name, provider, upstream_model, input_price, output_price, max_output_tokens, encoding, created_at, updated_at)
VALUES ('tollgate-echo', 'builtin', 'tollgate-echo', 1000000, 2000000, 4096, 'o200k_base', 0, 0);
