-- Snippet open: open(job) moves a job's packed record from {ns}:new to the
-- job's own hash; fail_unreadable(job, id, field, why) fails a job whose record
-- does not parse. Names come from the job's key. 'failed' is spelled out: a
-- unit test holds it to JobState::Failed.
-- KEYS: none
-- ARGV: none
--- @include "keys"
-- The namespace of job `id`'s key `job`, checked against Rust's layout
-- (`K.job`): a key of another shape stops the script.
local function ns_of_job(job, id)
  local ns = string.sub(job, 1, #job - #id - 5)
  assert(keys_for(ns).job(id) == job, 'not a job key: ' .. job)
  return ns
end
-- Set by the flow_end snippet when a script includes it: a job failed here
-- ends its dependants and counts in its batch.
local flow_hook = nil
local function fail_unreadable(job, id, field, why)
  local K = keys_for(ns_of_job(job, id))
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local old = redis.call('HGET', job, 'state')
  if old then redis.call('ZREM', K.state(old), id) end
  redis.call('HSET', job, 'id', id, 'state', 'failed', 'owner', '', 'parked', '',
    'error', 'record unreadable: ' .. field .. ': ' .. why)
  redis.call('ZADD', K.state('failed'), now, id)
  redis.call('ZREM', K.transit(), id)
  if flow_hook then flow_hook(job, id) end
end
local function open(job)
  local id = string.match(job, '[^:]*$')
  local K = keys_for(ns_of_job(job, id))
  local fresh = K.fresh()
  local packed = redis.call('HGET', fresh, id)
  if not packed then return end
  -- Everything checked before anything is written.
  local ok, rec = pcall(cjson.decode, packed)
  local bad
  local args = {}
  if not ok then
    bad = 'not JSON'
  elseif type(rec) ~= 'table' then
    bad = 'not a JSON object'
  else
    for k, v in pairs(rec) do
      if type(k) ~= 'string' or type(v) ~= 'string' then
        bad = 'the value of ' .. tostring(k) .. ' is not a string'
        break
      end
      args[#args + 1] = k
      args[#args + 1] = v
    end
    if not bad and (type(rec.state) ~= 'string' or rec.state == '') then bad = 'no state' end
    if not bad and not tonumber(rec.task_at or '0') then bad = 'task_at is not a number' end
  end
  if bad then
    -- The record's problem: kept, as it was, on the job's own hash, which
    -- says failed and why.
    redis.call('HSET', job, 'packed', packed)
    redis.call('HDEL', fresh, id)
    fail_unreadable(job, id, 'packed', bad)
    return
  end
  redis.call('HDEL', fresh, id)
  redis.call('HSET', job, unpack(args))
  -- Now in its state's index, since it was enqueued.
  redis.call('ZADD', K.state(rec.state), tonumber(rec.task_at or '0'), id)
end
