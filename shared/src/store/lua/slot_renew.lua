-- slot_renew: extends a job's slot to Redis's now + lease, if held.
-- KEYS[1] pool slots
-- KEYS[2] model slots (the pool's again for a job without a model)
-- ARGV[1] lease (ms)
-- ARGV[2] job id
-- Returns 1 when the pool slot was extended, else 0.
--- @include "redis_now"
local until_ms = redis_now_ms() + tonumber(ARGV[1])
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', until_ms, ARGV[2])
if KEYS[2] ~= KEYS[1] then redis.call('ZADD', KEYS[2], 'XX', until_ms, ARGV[2]) end
return n
