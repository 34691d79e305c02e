-- wrk script for the benchmark (scripts/bench.sh): POSTs one fixed body and prints one JSON line.
--
--   wrk -t1 -c16 -d10s -s bench/wrk-post.lua URL -- BODY_FILE ["Header: value" ...]
--
-- The last line wrk prints is `BENCH_JSON {...}` with the request count, the run's duration, the
-- latency percentiles (microseconds, over every request) and the error counts; a response whose
-- status is not 2xx counts in errors.status.

local body_file
local extra_headers = {}

function init(args)
  body_file = args[1]
  local f = assert(io.open(body_file, "rb"), "cannot open body file " .. tostring(body_file))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  for i = 2, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
