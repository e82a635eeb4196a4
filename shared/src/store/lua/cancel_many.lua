-- cancel_many: cancels the jobs named.
-- KEYS[1] events stream
-- ARGV[1..10] as the bulk snippet's (lua/bulk.lua)
-- ARGV[11..] job ids
-- Per id: '' (no such job), the final state it already had, 'cancelled', or the
-- active state it is in (its worker stops it: the cancel flag is set).
--- @include "bulk"
--- @include "enums"
--- @include "park"
--- @include "flow_end"
return each_job('cancelled', function(job, id, st)
  if FINAL[st] then return nil end
  redis.call('SET', CANCEL_PREFIX .. id, NOW, 'EX', 604800)
  if not PARKED[st] and st ~= ST.Scheduled then return nil end
  set_state(job, id, st, ST.Cancelled)
  redis.call('HSET', job, 'finished_at', NOW, 'owner', '')
  redis.call('DEL', RUN_PREFIX .. id)
  unpark(job, id)
  unslot(job, id)
  redis.call('ZREM', K.transit(), id)
  job_ended(NS, id, ST.Cancelled, MAXLEN)
  return ST.Cancelled
end)
