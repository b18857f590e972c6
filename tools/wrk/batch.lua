-- wrk script: POST one batch of 1000 realistic events (about 250 bytes each) to the
-- Tally batch ingest endpoint, over and over.
--
--   TALLY_TOKEN=tly_... wrk -t2 -c64 -d10s -s tools/wrk/batch.lua \
--       http://127.0.0.1:8080/api/v1/analytics/events/batch
--
-- TALLY_TOKEN is a write token; TALLY_BATCH_EVENTS overrides the batch size (default 1000).
-- The body is generated once per Lua state (so the request is formatted once per thread).
-- Events carry no client event_id, so every request stores new events instead of being
-- deduplicated. done() prints one "WRK_RESULT {json}" line that tools/http-load reads.

local token = os.getenv("TALLY_TOKEN")
if token == nil or token == "" then
   error("set TALLY_TOKEN to a Tally write token")
end
local count = tonumber(os.getenv("TALLY_BATCH_EVENTS") or "1000")

local names = { "message_sent", "message_received", "command_used", "session_started",
                "button_clicked", "subscription_renewed" }
local channels = { "telegram", "discord", "slack", "web", "whatsapp" }
local plans = { "free", "pro", "team", "enterprise" }
local locales = { "en-US", "de-DE", "fr-FR", "pt-BR", "ja-JP", "es-ES" }
local versions = { "3.12.1", "3.12.0", "3.11.4", "2.9.17" }

local function pick(list) return list[math.random(#list)] end

-- One event of roughly 250 bytes; `now` keeps timestamps in the recent past.
local function event(now)
   local t = now - math.random(0, 3600)
   return string.format(
      '{"event_name":"%s","user_id":"user_%06d","session_id":"sess_%08x",'
      .. '"timestamp":"%s.%03dZ","properties":{"channel":"%s","plan":"%s",'
      .. '"message_length":%d,"latency_ms":%d,"locale":"%s","app_version":"%s"}}',
      pick(names), math.random(0, 999999), math.random(0, 0x7fffffff),
      os.date("!%Y-%m-%dT%H:%M:%S", t), math.random(0, 999), pick(channels), pick(plans),
      math.random(1, 2000), math.random(5, 3000), pick(locales), pick(versions))
end

math.randomseed(42)
local now = os.time()
local events = {}
for i = 1, count do events[i] = event(now) end
local body = '{"events":[' .. table.concat(events, ",") .. ']}'

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local function json_line(summary, latency)
   return string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes_received":%d,"body_bytes":%d,'
      .. '"events_per_request":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes, #body, count,
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
      summary.errors.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max)
end

function done(summary, latency, requests)
   io.write(json_line(summary, latency))
end
