-- slot_holds: whether a job holds a slot a wake granted (its lease renewed here).
-- KEYS[1] pool slots
-- KEYS[2] model slots
-- ARGV[1] unused
-- ARGV[2] lease (ms)
-- ARGV[3] job id
-- ARGV[4] has model ('1')
-- Returns 1 when the job holds a slot, 0 when it holds none.
--- @include "redis_now"
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
local until_ms = redis_now_ms() + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], until_ms, ARGV[3])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], until_ms, ARGV[3]) end
return 1
