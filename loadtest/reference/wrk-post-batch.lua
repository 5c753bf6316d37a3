-- Batches of 1000 events (BATCH to change). 64 distinct bodies are prepared per thread
-- up front so that wrk spends its CPU on sending, not on building strings.
local size = tonumber(os.getenv("BATCH") or "1000")
local tid = 0
setup = function(thread) thread:set("tid", tid); tid = tid + 1 end
local reqs = nil
local k = 0
request = function()
  if reqs == nil then
    reqs = {}
    local n = 0
    for b = 1, 64 do
      local parts = {}
      for i = 1, size do
        n = n + 1
        parts[i] = '{"stream":"bench","source":"wrk","payload":{"entity_id":"wb-' .. tid .. '-' ..
          n .. '","properties":{"temp":22.5,"unit":"celsius","seq":' .. n .. '}}}'
      end
      local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
      reqs[b] = wrk.format("POST", "/api/events/batch", {["Content-Type"] = "application/json"}, body)
    end
  end
  k = k % 64 + 1
  return reqs[k]
end
