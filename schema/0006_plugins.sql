-- Plugins: operator-registered tools that tenants enable (README, "Plugins").

CREATE TABLE plugins (
  id             TEXT PRIMARY KEY,          -- the manifest's identifier, e.g. weather
  manifest       TEXT NOT NULL,             -- the validated manifest, JSON
  price_per_call INTEGER NOT NULL DEFAULT 0 CHECK (price_per_call >= 0), -- micro-units per successful call
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL
);

-- A tenant's enablement of a plugin. `settings` is sealed (AES-256-GCM under the
-- PLUGIN_SETTINGS_KEY secret, bound to tenant and plugin) and never returned by any API.
CREATE TABLE tenant_plugins (
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  plugin_id   TEXT NOT NULL REFERENCES plugins(id),
  is_default  INTEGER NOT NULL DEFAULT 0,   -- offered when a request has no `plugins` field
  settings    TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, plugin_id)
);
CREATE INDEX tenant_plugins_plugin ON tenant_plugins(plugin_id);

-- One row per plugin invocation (tool call or slash command). `id` is `<request id>.c<n>`; a
-- priced call first holds its price as a reservation under the same id, and its settlement
-- deletes the reservation and inserts this row in one batch.
CREATE TABLE plugin_calls (
  id          TEXT PRIMARY KEY,
  request_id  TEXT NOT NULL,                -- the client request (X-Request-Id)
  tenant_id   TEXT NOT NULL,
  key_id      TEXT NOT NULL,
  session_id  TEXT,
  plugin_id   TEXT NOT NULL,
  api         TEXT NOT NULL,
  mode        TEXT NOT NULL,                -- tool | command
  status      TEXT NOT NULL,                -- ok | invalid_arguments | timeout | response_too_large | ...
  http_status INTEGER,                      -- the plugin's status, when it answered
  latency_ms  INTEGER NOT NULL,
  cost        INTEGER NOT NULL DEFAULT 0 CHECK (cost >= 0), -- charged (successful priced calls)
  created_at  INTEGER NOT NULL
);
CREATE INDEX plugin_calls_tenant ON plugin_calls(tenant_id, plugin_id, created_at);
CREATE INDEX plugin_calls_request ON plugin_calls(request_id);

-- Charging a call moves the balance, like usage_charge. INSERT OR IGNORE of an existing row
-- fires nothing, so a retried settlement never charges twice.
CREATE TRIGGER plugin_call_charge AFTER INSERT ON plugin_calls WHEN NEW.cost > 0 BEGIN
  UPDATE tenants SET balance = balance - NEW.cost WHERE id = NEW.tenant_id;
END;
