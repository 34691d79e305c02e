-- Extra provider routes per model, tried after the model's own provider (priority 0) when it fails
-- retryably before anything was sent to the client. Routes of equal priority share traffic by weight.
CREATE TABLE model_routes (
  model          TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
  provider       TEXT NOT NULL REFERENCES providers(name),
  upstream_model TEXT NOT NULL,
  priority       INTEGER NOT NULL DEFAULT 1 CHECK (priority >= 0),
  weight         INTEGER NOT NULL DEFAULT 1 CHECK (weight > 0),
  PRIMARY KEY (model, provider, upstream_model)
);

-- The routes that failed before the serving one (JSON array of "provider/upstream_model"); NULL when
-- the first route served the request.
ALTER TABLE usage ADD COLUMN routes_tried TEXT;
