-- flow_add: the enqueue transaction's part for jobs with parents (`--after`)
-- or a batch (`--batch`), after finish (see store::flow). Sent as EVAL inside
-- the transaction, only when a chunk has such a job.
-- KEYS: none (builds every key with K)
-- ARGV[1] namespace
-- ARGV[2] events max length
-- ARGV[3..] per job 4 values: id, parents (comma-separated ids or ''),
--   after_any ('1' or ''), batch name (or '')
-- A job finish dropped (a duplicate key) is skipped. Each parent is looked at
-- once, now: one still running or waiting gets the job in its dependants and
-- the job counts it (deps_pending); one already completed (any end with
-- after_any) counts as done; one that ended otherwise, or does not exist,
-- cancels the job, naming it. No parent left to wait for: queued, in its lane.
-- Returns the number of jobs that wait for a parent.
local NS = ARGV[1]
--- @include "flow_end"
local maxlen = tonumber(ARGV[2])
local FK = keys_for(NS)
local waiting = 0
for i = 3, #ARGV, 4 do
  local id, after, any, batch = ARGV[i], ARGV[i + 1], ARGV[i + 2] == '1', ARGV[i + 3]
  local job = FK.job(id)
  if redis.call('HEXISTS', FK.fresh(), id) == 1 or redis.call('EXISTS', job) == 1 then
    if batch ~= '' then redis.call('SADD', FK.batch_jobs(batch), id) end
    if after ~= '' then
      open(job)
      local now_ms = redis_now_ms()
      local at = flow_iso(now_ms)
      local pending, gone, why = 0, nil, nil
      for parent in string.gmatch(after, '[^,]+') do
        local pjob = FK.job(parent)
        open(pjob)
        local st = redis.call('HGET', pjob, 'state')
        if not st then
          gone, why = parent, 'does not exist'
        elseif FINAL[st] then
          if not (any or st == ST.Completed or st == ST.Merged) then gone, why = parent, st end
        else
          redis.call('SADD', FK.dependants(parent), id)
          pending = pending + 1
        end
        if gone then break end
      end
      if gone then
        flow_cancel(job, id, gone, why, now_ms, at, maxlen)
        job_ended(NS, id, ST.Cancelled, maxlen)
      elseif pending == 0 then
        flow_release(job, id, now_ms, at, maxlen)
      else
        redis.call('HSET', job, 'deps_pending', pending)
        waiting = waiting + 1
      end
    end
  end
end
return waiting
