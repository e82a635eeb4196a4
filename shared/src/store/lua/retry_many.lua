-- retry_many: runs the finished jobs named again, at the back of their lanes.
-- KEYS[1] events stream
-- ARGV[1..10] as the bulk snippet's (lua/bulk.lua)
-- ARGV[11..] job ids
-- Per id: '' (no such job), 'queued' (retried), or the state it is in (left
-- alone: not finished, or no longer in the state it was selected in).
--- @include "bulk"
--- @include "enums"
--- @include "park"
return each_job('retried', function(job, id, st)
  if not FINAL[st] then return nil end
  if SELECTED ~= '' and st ~= SELECTED then return nil end
  -- Validate before writing: a job whose seq does not parse (a corrupt
  -- record, failed as such) is left alone, not half-retried.
  if not tonumber(redis.call('HGET', job, 'seq') or '0') then return nil end
  redis.call('DEL', CANCEL_PREFIX .. id)
  redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'tries', 0, 'owner', '', 'order', redis.call('INCR', K.order()),
    unpack(RERUN_CLEARED))
  set_state(job, id, st, ST.Queued)
  park_job(job, id, '')
  return ST.Queued
end)
