-- GET by id over ids written by wrk-post-event.lua (thread 0).
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", string.format("/api/state/entities/wrk-0-%06d", n % 100000))
end
