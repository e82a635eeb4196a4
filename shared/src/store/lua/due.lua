-- due: takes the pool timers due by Redis's clock.
-- KEYS: none
-- ARGV[1] namespace
-- ARGV[2] unused
-- Returns the pools whose timers were due.
--- @include "redis_now"
--- @include "keys"
local t = keys_for(ARGV[1]).timers()
local due = redis.call('ZRANGEBYSCORE', t, '-inf', redis_now_ms(), 'LIMIT', 0, 100)
if #due > 0 then redis.call('ZREM', t, unpack(due)) end
return due
