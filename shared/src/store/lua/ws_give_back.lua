-- ws_give_back: drops a workspace lease if the job holds it; then, the
-- workspace being free, the first job in its line goes to its pool's lane.
-- KEYS[1] workspace lease
-- KEYS[2] workspace line
-- ARGV[1] job id
-- ARGV[2] namespace
-- ARGV[3] job key prefix
-- Returns 1 when a job left the line, else 0.
local NS, JOB_PREFIX = ARGV[2], ARGV[3]
--- @include "park"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not head then return 0 end
redis.call('ZREM', KEYS[2], head)
park_job(JOB_PREFIX .. head, head, '')
return 1
