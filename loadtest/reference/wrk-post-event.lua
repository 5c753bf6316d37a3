-- One event per request, entity ids cycling over 100,000 ids so that both shards work.
local n = 0
local tid = 0
setup = function(thread) thread:set("tid", tid); tid = tid + 1 end
request = function()
  n = n + 1
  local id = string.format("wrk-%d-%06d", tid, n % 100000)
  local body = '{"stream":"bench","source":"wrk","payload":{"entity_id":"' .. id ..
    '","properties":{"temp":22.5,"unit":"celsius","seq":' .. n .. '}}}'
  return wrk.format("POST", "/api/events", {["Content-Type"] = "application/json"}, body)
end
