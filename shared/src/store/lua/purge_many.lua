-- purge_many: deletes finished jobs still in the state purged since before a time.
-- KEYS[1] index of all jobs
-- KEYS[2] index of the state purged
-- ARGV[1] job key prefix
-- ARGV[2] history prefix
-- ARGV[3] log tail prefix
-- ARGV[4] cancel flag prefix
-- ARGV[5] idempotency key prefix
-- ARGV[6] the state purged
-- ARGV[7] before (ms)
-- ARGV[8..] job ids
-- Per id: 1 deleted, 0 skipped (no such job, or not in that state since before then).
local JOB, HISTORY, LOG, CANCEL, KEY = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state, before = ARGV[6], tonumber(ARGV[7])
local out = {}
for i = 8, #ARGV do
  local id = ARGV[i]
  local job = JOB .. id
  local f = redis.call('HMGET', job, 'state', 'key')
  local since = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if f[1] ~= state or not since or since > before then
    out[#out + 1] = 0
  else
    local key = f[2]
    if key and key ~= '' and redis.call('GET', KEY .. key) == id then redis.call('DEL', KEY .. key) end
    redis.call('DEL', job, HISTORY .. id, LOG .. id, CANCEL .. id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    out[#out + 1] = 1
  end
end
return out
