-- wrk script: POST /voter/votes, one vote per request over 8 candidates.
-- Arguments (after --): "keyed" or "plain", then a run id, then optionally an API key
-- (X-API-Key, for runs through the gateway). Keyed requests carry a new
-- Idempotency-Key each (unique per run, thread and request), as careful clients send them.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  keyed = args[1] == "keyed"
  run = args[2] or "0"
  apikey = args[3]
  n = 0
end

function request()
  n = n + 1
  local headers = { ["Content-Type"] = "application/json" }
  if apikey then
    headers["X-API-Key"] = apikey
  end
  if keyed then
    headers["Idempotency-Key"] = "bench-" .. run .. "-" .. tid .. "-" .. n
  end
  local body = '{"candidate":"Candidate ' .. (n % 8) .. '","election":"Bench Idempotency"}'
  return wrk.format("POST", nil, headers, body)
end
