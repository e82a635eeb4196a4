-- Snippet redis_now: redis_now_ms(), Redis's clock (TIME) in ms.
-- KEYS: none
-- ARGV: none
local function redis_now_ms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
