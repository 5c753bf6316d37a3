-- One event per request, entity ids cycling over 100,000 ids so that both shards work.
-- Auth mode: FLUX_NS=<namespace> prefixes the ids, FLUX_TOKEN=<token> is sent as a
-- bearer token.
local ns = os.getenv("FLUX_NS")
local prefix = ns and (ns .. "/") or ""
local headers = {["Content-Type"] = "application/json"}
if os.getenv("FLUX_TOKEN") then headers["Authorization"] = "Bearer " .. os.getenv("FLUX_TOKEN") end
local n = 0
local tid = 0
setup = function(thread) thread:set("tid", tid); tid = tid + 1 end
request = function()
  n = n + 1
  local id = prefix .. string.format("wrk-%d-%06d", tid, n % 100000)
  local body = '{"stream":"bench","source":"wrk","payload":{"entity_id":"' .. id ..
    '","properties":{"temp":22.5,"unit":"celsius","seq":' .. n .. '}}}'
  return wrk.format("POST", "/api/events", headers, body)
end
