-- wrk script: POST elections with unique titles (the title is unique in the service).
local counter = 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"title":"bench %d-%d-%d","date":"2016-11-08","electionType":"FEDERAL","description":"benchmark"}',
    tid, counter, math.random(1000000000))
  return wrk.format("POST", "/election/elections", {["Content-Type"] = "application/json"}, body)
end
