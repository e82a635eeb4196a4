-- wake: grants free slots of a pool to its oldest parked jobs that can start
-- and pushes their deliveries (see store::park and WakeArgs).
-- KEYS[1..5] the queue keys (see push)
-- ARGV[1] namespace
-- ARGV[2] job key prefix
-- ARGV[3] pool
-- ARGV[4] unused (now is Redis's TIME)
-- ARGV[5] slot lease (ms)
-- ARGV[6] pool limit (0: none)
-- ARGV[7] window (room of a pool without a limit)
-- ARGV[8] pacing (ms, 0: none)
-- ARGV[9] number of task ids n
-- ARGV[10..9+n] task ids
-- ARGV[10+n..] model/limit pairs
-- Returns the number of jobs granted a slot.
--- @include "push"
--- @include "open"
--- @include "enums"
--- @include "redis_now"
local NS, JOB_PREFIX, pool = ARGV[1], ARGV[2], ARGV[3]
local now, lease, plimit, window, rate = redis_now_ms(), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ntasks = tonumber(ARGV[9])
local mlimit = {}
for i = 10 + ntasks, #ARGV, 2 do mlimit[ARGV[i]] = tonumber(ARGV[i + 1]) end
local slots = NS .. ':limit:' .. pool
local lanes = NS .. ':lanes:' .. pool
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local models = redis.call('SMEMBERS', lanes)
if #models == 0 then
  redis.call('SREM', NS .. ':pools', pool)
  return 0
end
for _, m in ipairs(models) do
  if m ~= '-' then redis.call('ZREMRANGEBYSCORE', slots .. ':' .. m, '-inf', now) end
end
-- An operator's pause (`agentq pause`, `stop --now`, `start_paused`) has no
-- end: no timer; `agentq unpause` wakes the pool.
if redis.call('EXISTS', NS .. ':fleet:paused_all') == 1
    or redis.call('SISMEMBER', NS .. ':fleet:paused', pool) == 1 then
  return 0
end
-- While workers are live but none can run this pool (its image is missing
-- on every one), its jobs stay parked: a delivery would only come back.
if redis.call('ZCOUNT', NS .. ':servers', now, '+inf') > 0
    and redis.call('ZCOUNT', NS .. ':serves:' .. pool, now, '+inf') == 0 then
  return 0
end
local pttl = redis.call('PTTL', NS .. ':backoff:' .. pool)
if pttl > 0 then
  redis.call('ZADD', NS .. ':timers', now + pttl, pool)
  return 0
end
local cap = window
if plimit > 0 then cap = plimit end
local running = redis.call('ZCARD', slots)
local mcount = {}
local granted = 0
while running < cap and granted < ntasks do
  local best, best_score, best_m = nil, nil, nil
  for _, m in ipairs(models) do
    local lim = mlimit[m] or 0
    local room = true
    if lim > 0 and m ~= '-' then
      if mcount[m] == nil then mcount[m] = redis.call('ZCARD', slots .. ':' .. m) end
      room = mcount[m] < lim
    end
    if room then
      local lane = NS .. ':lane:' .. pool .. ':' .. m
      while true do
        local h = redis.call('ZRANGE', lane, 0, 0, 'WITHSCORES')
        if #h == 0 then
          if redis.call('EXISTS', lane) == 0 then redis.call('SREM', lanes, m) end
          break
        end
        open(JOB_PREFIX .. h[1])
        local st, seq = unpack(redis.call('HMGET', JOB_PREFIX .. h[1], 'state', 'seq'))
        if st and PARKED[st] and not tonumber(seq or '0') then
          -- Its grant would write `seq`: fail it (kept) instead, and go on.
          fail_unreadable(JOB_PREFIX .. h[1], h[1], 'seq', '`' .. seq .. '` is not a number')
          st = nil
        end
        if st and PARKED[st] then
          local s = tonumber(h[2])
          if best_score == nil or s < best_score then best, best_score, best_m = h[1], s, m end
          break
        end
        redis.call('ZREM', lane, h[1])
      end
    end
  end
  if best == nil then break end
  if rate > 0 then
    local last = tonumber(redis.call('GET', NS .. ':rate:' .. pool) or '0')
    if now - last < rate then
      redis.call('ZADD', NS .. ':timers', last + rate, pool)
      break
    end
    redis.call('SET', NS .. ':rate:' .. pool, now, 'PX', rate * 2 + 1000)
  end
  redis.call('ZREM', NS .. ':lane:' .. pool .. ':' .. best_m, best)
  redis.call('ZADD', slots, now + lease, best)
  if best_m ~= '-' then
    redis.call('ZADD', slots .. ':' .. best_m, now + lease, best)
    if mcount[best_m] then mcount[best_m] = mcount[best_m] + 1 end
  end
  running = running + 1
  granted = granted + 1
  local job = JOB_PREFIX .. best
  local task = ARGV[9 + granted]
  local seq = redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'task', task, 'task_at', now, 'parked', '', 'admitted_ms', now)
  redis.call('ZADD', NS .. ':transit', now, best)
  push_delivery(task, best, seq, 0, now, false)
end
wake()
if granted > 0 then redis.call('PUBLISH', NS .. ':deliver', granted) end
return granted
