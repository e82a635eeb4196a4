-- fleet: an operator's pause with no end, its lifting, and stop-now
-- (see store::fleet). Every key has no expiry: it outlives every worker.
-- KEYS[1] paused pools (set)
-- KEYS[2] whole fleet paused (string)
-- KEYS[3] stop times (hash: pool or '*' -> Redis ms)
-- KEYS[4] events stream
-- KEYS[5] the fleet's first start marker
-- ARGV[1] op: 'pause' | 'stop' | 'unpause' | 'first_start'
-- ARGV[2] '1': every pool (the fleet), else the pools in ARGV[7..]
-- ARGV[3] events max length
-- ARGV[4] now (RFC 3339)
-- ARGV[5] cause ('operator', 'start_paused')
-- ARGV[6] wake channel
-- ARGV[7..] pools (for 'unpause' of the fleet: the pools to wake)
-- Returns how many pauses changed (a pool, or the fleet counting 1); for
-- 'first_start', 1 when this start paused the fleet.
--- @include "redis_now"
local op, all, maxlen, at, cause, wake = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local function event(...)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', ...)
end
local function pause()
  local changed = 0
  if all then
    if redis.call('SET', KEYS[2], at) then changed = 1 end
    event('event', 'fleet_paused', 'cause', cause, 'at', at)
  else
    for i = 7, #ARGV do
      changed = changed + redis.call('SADD', KEYS[1], ARGV[i])
      event('event', 'pool_paused', 'pool', ARGV[i], 'cause', cause, 'at', at)
    end
  end
  return changed
end
if op == 'first_start' then
  if not redis.call('SET', KEYS[5], at, 'NX') then return 0 end
  if ARGV[2] ~= '1' then return 0 end
  redis.call('SET', KEYS[2], at)
  event('event', 'fleet_paused', 'cause', cause, 'at', at)
  return 1
end
if op == 'pause' then return pause() end
if op == 'stop' then
  local changed = pause()
  local now = redis_now_ms()
  if all then
    redis.call('HSET', KEYS[3], '*', now)
    event('event', 'fleet_stopped', 'cause', cause, 'at', at)
  else
    for i = 7, #ARGV do
      redis.call('HSET', KEYS[3], ARGV[i], now)
      event('event', 'pool_stopped', 'pool', ARGV[i], 'cause', cause, 'at', at)
    end
  end
  return changed
end
if op == 'unpause' then
  local changed = 0
  local wakes = {}
  for i = 7, #ARGV do wakes[#wakes + 1] = ARGV[i] end
  if all then
    changed = redis.call('DEL', KEYS[2])
    for _, p in ipairs(redis.call('SMEMBERS', KEYS[1])) do
      wakes[#wakes + 1] = p
      changed = changed + 1
    end
    redis.call('DEL', KEYS[1])
    -- The first start is over for good: a restart does not pause again.
    redis.call('SET', KEYS[5], at, 'NX')
    event('event', 'fleet_resumed', 'cause', cause, 'at', at)
  else
    for i = 7, #ARGV do
      changed = changed + redis.call('SREM', KEYS[1], ARGV[i])
      event('event', 'pool_resumed', 'pool', ARGV[i], 'cause', cause, 'at', at)
    end
  end
  -- Its waiting jobs are woken by every worker's wake-up listener.
  for _, p in ipairs(wakes) do redis.call('PUBLISH', wake, p) end
  return changed
end
return redis.error_reply('fleet: unknown op ' .. tostring(op))
