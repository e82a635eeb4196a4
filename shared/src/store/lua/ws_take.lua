-- ws_take: takes a workspace lease (or extends the caller's own).
-- KEYS[1] workspace lease
-- ARGV[1] ttl (ms)
-- ARGV[2] job id
-- Returns '' (taken) or the holder's id.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return ''
end
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return ''
