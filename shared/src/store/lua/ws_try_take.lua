-- ws_try_take: takes a workspace lease only if it is free and nobody waits.
-- KEYS[1] workspace lease
-- KEYS[2] workspace line
-- ARGV[1] job id
-- ARGV[2] ttl (ms)
-- Returns 1 if taken.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
