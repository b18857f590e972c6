-- wrk script: POST one realistic event (about 250 bytes) per request to the Tally
-- single-event endpoint, or, with the same body and headers, to `tally baseline-server`'s
-- bare POST /baseline route (the yardstick).
--
--   TALLY_TOKEN=tly_... wrk -t2 -c64 -d10s -s tools/wrk/single.lua \
--       http://127.0.0.1:8080/api/v1/analytics/events
--   wrk -t2 -c64 -d10s -s tools/wrk/single.lua http://127.0.0.1:8081/baseline
--
-- TALLY_TOKEN (a write token) is required by Tally and ignored by the baseline; it is sent
-- when set. The event carries no client event_id, so every request stores a new event.
-- done() prints one "WRK_RESULT {json}" line that tools/http-load reads.

local token = os.getenv("TALLY_TOKEN")

local now = os.time()
local body = string.format(
   '{"event_name":"message_sent","user_id":"user_004217","session_id":"sess_5f3a9c21",'
   .. '"timestamp":"%s.417Z","properties":{"channel":"telegram","plan":"pro",'
   .. '"message_length":142,"latency_ms":387,"locale":"en-US","app_version":"3.12.1"}}',
   os.date("!%Y-%m-%dT%H:%M:%S", now - 60))

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
if token ~= nil and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes_received":%d,"body_bytes":%d,'
      .. '"events_per_request":1,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes, #body,
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
      summary.errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
