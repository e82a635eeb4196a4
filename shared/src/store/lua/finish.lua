-- finish: the last command of an enqueue transaction (see store::create).
-- KEYS[1..5] the queue keys (see push)
-- KEYS[6] events stream
-- KEYS[7] index of all jobs
-- KEYS[8] new jobs hash ({ns}:new)
-- ARGV[1] namespace
-- ARGV[2] idempotency key prefix
-- ARGV[3] job key prefix
-- ARGV[4] now (ms)
-- ARGV[5] created at (RFC 3339)
-- ARGV[6] events max length
-- ARGV[7] first id
-- ARGV[8] last id
-- ARGV[9] number of jobs
-- ARGV[10] number of key entries n
-- ARGV[11..] n x (id, key or '', lane (or {ns}:scheduled) or ''), then dry runs' (id, task id) pairs
-- Returns per key entry the id of an existing job with the same key, or ''.
--- @include "push"
--- @include "enums"
--- @include "keys"
--- @include "unique_key"
local events, jobs, fresh = KEYS[6], KEYS[7], KEYS[8]
local NS, key_prefix, job_prefix = ARGV[1], ARGV[2], ARGV[3]
local K = keys_for(NS)
local now_ms, created, maxlen = ARGV[4], ARGV[5], ARGV[6]
local first, last, count, nkeyed = ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local out, dropped = {}, {}
local i = 11
if nkeyed > 0 then
  first, last = nil, nil
  for _ = 1, nkeyed do
    local id, key, lane = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    local dup = ''
    if key ~= '' then
      local had = redis.call('GET', key_prefix .. key)
      if had and had ~= id and (redis.call('HEXISTS', fresh, had) == 1
          or redis.call('EXISTS', job_prefix .. had) == 1)
          and key_held(key, job_prefix .. had) then
        dup = had
      else
        redis.call('SET', key_prefix .. key, id)
      end
    end
    if dup ~= '' then
      redis.call('HDEL', fresh, id)
      redis.call('ZREM', jobs, id)
      if lane ~= '' then redis.call('ZREM', lane, id) end
      if lane == K.scheduled() then
        -- A delayed job is written in its own hash (see store::scheduled).
        redis.call('ZREM', K.state(ST.Scheduled), id)
        redis.call('DEL', job_prefix .. id)
      end
      dropped[id] = true
      count = count - 1
    else
      first = first or id
      last = id
    end
    table.insert(out, dup)
  end
end
while i <= #ARGV do
  local id, task = ARGV[i], ARGV[i + 1]
  i = i + 2
  if not dropped[id] then
    push_delivery(task, id, 1, 0, now_ms, false)
    redis.call('ZADD', K.transit(), now_ms, id)
  end
end
wake()
if count > 0 then
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'event', 'enqueued', 'jobs', count,
    'first', first, 'last', last, 'at', created)
end
return out
