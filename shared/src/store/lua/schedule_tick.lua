-- schedule_tick: compare-and-set of a periodic schedule's last tick
-- ({ns}:schedule:{name}, Unix seconds): the one caller that moves it forward
-- to a tick enqueues that tick's job.
-- KEYS: none
-- ARGV[1] namespace
-- ARGV[2] schedule name
-- ARGV[3] tick (Unix seconds)
-- ARGV[4] '1' when a missing last tick is only recorded (a worker's start: a
--         new schedule enqueues nothing for ticks before it existed), else ''
-- ARGV[5] '1' to only look: the tick is not moved (a missing one is still
--         recorded when ARGV[4] says so); the caller enqueues the tick's job
--         first, under the tick's idempotency key, then moves the tick, so
--         that a failure between the two loses nothing (see store::schedules)
-- Returns 1 when this caller took the tick (or, looking, would take it), 0
-- when it was taken already (or only recorded).
--- @include "keys"
local K = keys_for(ARGV[1])
local key, tick, record_only = K.schedule_tick(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local last = tonumber(redis.call('GET', key) or '')
if last == nil and record_only then
  redis.call('SET', key, ARGV[3])
  return 0
end
if last ~= nil and last >= tick then return 0 end
if ARGV[5] == '1' then return 1 end
redis.call('SET', key, ARGV[3])
return 1
