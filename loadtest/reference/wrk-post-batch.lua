-- Batches of 1000 events (BATCH to change). 64 distinct bodies are prepared per thread
-- up front so that wrk spends its CPU on sending, not on building strings.
-- Auth mode: FLUX_NS=<namespace> prefixes the ids, FLUX_TOKEN=<token> is sent as a
-- bearer token.
local size = tonumber(os.getenv("BATCH") or "1000")
local ns = os.getenv("FLUX_NS")
local prefix = ns and (ns .. "/") or ""
local headers = {["Content-Type"] = "application/json"}
if os.getenv("FLUX_TOKEN") then headers["Authorization"] = "Bearer " .. os.getenv("FLUX_TOKEN") end
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
        parts[i] = '{"stream":"bench","source":"wrk","payload":{"entity_id":"' .. prefix .. 'wb-' .. tid .. '-' ..
          n .. '","properties":{"temp":22.5,"unit":"celsius","seq":' .. n .. '}}}'
      end
      local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
      reqs[b] = wrk.format("POST", "/api/events/batch", headers, body)
    end
  end
  k = k % 64 + 1
  return reqs[k]
end
