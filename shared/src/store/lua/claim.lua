-- claim: takes up to `most` jobs left to this host whose delivery still waits
-- in the scheduled set; their deliveries are consumed here.
-- KEYS[1..5] the queue keys (see push)
-- KEYS[6] the host's affinity set
-- ARGV[1] unused (now is Redis's TIME)
-- ARGV[2] most
-- ARGV[3] job key prefix
-- Returns the deliveries' data.
--- @include "push"
--- @include "open"
--- @include "redis_now"
local set, now, most, job_prefix = KEYS[6], redis_now_ms(), tonumber(ARGV[2]), ARGV[3]
redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
  if #out >= most then break end
  redis.call('ZREM', set, id)
  open(job_prefix .. id)
  local task = redis.call('HGET', job_prefix .. id, 'task')
  if task and redis.call('ZREM', Q_SCHEDULED, task) == 1 then
    local data = redis.call('HGET', Q_DATA, task)
    redis.call('HDEL', Q_DATA, task)
    redis.call('DEL', Q_META .. ':' .. task)
    if data then table.insert(out, data) end
  end
end
return out
