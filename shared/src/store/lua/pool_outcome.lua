-- pool_outcome: counts a pool's fast failures and pauses it after too many.
-- KEYS[1] fast failure counter
-- KEYS[2] pause key
-- KEYS[3] events stream
-- ARGV[1] fast failure ('1') or not
-- ARGV[2] failures that pause the pool
-- ARGV[3] pause (ms)
-- ARGV[4] pause ends at (RFC 3339)
-- ARGV[5] pool
-- ARGV[6] events max length
-- ARGV[7] now (RFC 3339)
-- Returns 1 when this outcome paused the pool, else 0.
--- @include "notify_hand"
if ARGV[1] == '1' then
  local n = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 86400000)
  if n >= tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
    redis.call('DEL', KEYS[1])
    local event_id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'event', 'pool_paused',
      'pool', ARGV[5], 'until', ARGV[4], 'at', ARGV[7])
    notify_hand(notify_ns(KEYS[3]), 'pool_paused', event_id, {pool = ARGV[5], ['until'] = ARGV[4], at = ARGV[7]})
    return 1
  end
  return 0
end
redis.call('DEL', KEYS[1])
return 0
