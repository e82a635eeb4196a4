-- due: takes the timers due by Redis's clock and says when the next one is.
-- The timer `@deliveries` (DELIVERIES_TIMER) stands for apalis's scheduled
-- set: when due, the deliveries due by now move to the active list, as
-- apalis's own fetch would move them, the intakes are told on `{ns}:deliver`,
-- and the timer is set again for the next scheduled delivery.
-- KEYS[1..5] the queue keys (see push)
-- ARGV[1] namespace
-- ARGV[2] unused
-- Returns {ms until the first timer left ('-1': none), due members...}.
--- @include "push"
--- @include "redis_now"
--- @include "keys"
--- @include "timer_add"
local NS = ARGV[1]
local K = keys_for(NS)
local t = K.timers()
local now = redis_now_ms()
local due = redis.call('ZRANGEBYSCORE', t, '-inf', now, 'LIMIT', 0, 100)
if #due > 0 then redis.call('ZREM', t, unpack(due)) end
for _, member in ipairs(due) do
  if member == DELIVERIES_TIMER then
    -- apalis schedules in whole seconds.
    local secs = math.floor(now / 1000)
    local ids = redis.call('ZRANGEBYSCORE', Q_SCHEDULED, 0, secs)
    if #ids > 0 then
      redis.call('RPUSH', Q_ACTIVE, unpack(ids))
      redis.call('ZREM', Q_SCHEDULED, unpack(ids))
      redis.call('DEL', Q_SIGNAL)
      redis.call('LPUSH', Q_SIGNAL, 1)
      redis.call('PUBLISH', K.deliver(), #ids)
    end
    local later = redis.call('ZRANGEBYSCORE', Q_SCHEDULED, '(' .. secs, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #later > 0 then add_timer(NS, DELIVERIES_TIMER, tonumber(later[2]) * 1000, true) end
  end
end
local first = redis.call('ZRANGE', t, 0, 0, 'WITHSCORES')
local next_in = -1
if #first > 0 then next_in = math.max(0, tonumber(first[2]) - now) end
table.insert(due, 1, tostring(next_in))
return due
