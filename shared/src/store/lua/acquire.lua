-- acquire: takes a job's run lease and a new fencing token.
-- KEYS[1] job
-- KEYS[2] run lease
-- ARGV[1] worker
-- ARGV[2] ttl (ms)
-- ARGV[3] the delivery's seq
-- Returns {'gone'} | {'stale'} | {'held', holder} | {'ok', token, previous owner}
-- | {'unreadable'} (its fence is not a number: the job is failed, its slot given back).
--- @include "open"
--- @include "enums"
-- The namespace, for flow_end (a job failed here ends its dependants).
local NS = ns_of_job(KEYS[1], string.match(KEYS[1], '[^:]*$'))
--- @include "flow_end"
local job, lease = KEYS[1], KEYS[2]
open(job)
if redis.call('EXISTS', job) == 0 then return {'gone'} end
local f = redis.call('HMGET', job, 'seq', 'state', 'owner')
if f[1] ~= ARGV[3] or FINAL[f[2]] then return {'stale'} end
local cur = redis.call('GET', lease)
if cur then return {'held', cur} end
-- Checked before anything is written.
local fence = redis.call('HGET', job, 'fence')
if not tonumber(fence or '0') then
  local id = string.match(job, '[^:]*$')
  local K = keys_for(ns_of_job(job, id))
  fail_unreadable(job, id, 'fence', '`' .. fence .. '` is not a number')
  -- The slot its wake granted goes back.
  local p = redis.call('HMGET', job, 'pool', 'model')
  if (p[1] or '') ~= '' then
    redis.call('ZREM', K.limit(p[1]), id)
    if (p[2] or '') ~= '' then redis.call('ZREM', K.limit_model(p[1], p[2]), id) end
    redis.call('PUBLISH', K.wake(), p[1])
  end
  return {'unreadable'}
end
local n = redis.call('HINCRBY', job, 'fence', 1)
local token = ARGV[1] .. '/' .. n
redis.call('SET', lease, token, 'PX', ARGV[2])
redis.call('HSET', job, 'owner', token)
return {'ok', token, f[3] or ''}
