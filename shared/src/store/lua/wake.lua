-- wake: grants free slots of a pool to its oldest parked jobs that can start
-- and pushes their deliveries (see store::park and WakeArgs).
-- KEYS[1..5] the queue keys (see push)
-- ARGV[1] namespace
-- ARGV[2] job key prefix
-- ARGV[3] pool
-- ARGV[4] pacing (agentq_domain::pacing, upstream's RateConfig), '' for none:
--         'reset_ms daily_limit sustained_ms burst_window_ms burst_ms'; it
--         replaces ARGV[8]'s flat gap
-- ARGV[5] slot lease (ms)
-- ARGV[6] pool limit (0: none)
-- ARGV[7] window (room of a pool without a limit)
-- ARGV[8] pacing (ms, 0: none)
-- ARGV[9] priority age (ms, 0: none): a lane's head older than this (by its
--         id, a ULID) counts one priority level higher
-- ARGV[10] number of task ids n
-- ARGV[11..10+n] task ids
-- ARGV[11+n..] model/limit pairs
-- A pool's lanes are its models' (`-`: none), each also with `~high` and
-- `~low` for those priorities (agentq_domain::priority::Priority::lane).
-- Returns the number of jobs granted a slot.
--- @include "push"
--- @include "open"
--- @include "enums"
--- @include "redis_now"
--- @include "keys"
--- @include "timer_add"
local NS, JOB_PREFIX, pool = ARGV[1], ARGV[2], ARGV[3]
-- Key names as Rust builds them (agentq_domain::keys::Keys, lua::KEY_FNS).
local K = keys_for(NS)
--- @include "flow_end"
local now, lease, plimit, window, rate = redis_now_ms(), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local age_ms, ntasks = tonumber(ARGV[9]), tonumber(ARGV[10])
local LEVEL = {low = 0, normal = 1, high = 2}
-- A lane's model and its priority level.
local function lane_of(m)
  local model, prio = string.match(m, '^(.-)~(%a+)$')
  if model and LEVEL[prio] then return model, LEVEL[prio] end
  return m, LEVEL.normal
end
local B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
-- When job `id` (a ULID) was made (ms), nil for an id that is not one.
local function ulid_ms(id)
  local ms = 0
  for i = 1, 10 do
    local c = string.find(B32, string.sub(id, i, i), 1, true)
    if not c then return nil end
    ms = ms * 32 + (c - 1)
  end
  return ms
end
-- Pacing as upstream's delayForAgent (dappco.re/go/agent pkg/runner): the
-- gap is burst_ms when the next reset is at most burst_window_ms away, else
-- sustained_ms (none when sustained_ms is 0). The day runs from one reset to
-- the next; daily_limit (0: none) counts the starts granted in it under
-- {ns}:starts:{pool}:{day start ms} (Keys::starts). Same arithmetic as
-- Pacing::day_window / delay_ms / next_start_ms, on Redis's clock.
local pace = nil
if ARGV[4] ~= '' then
  local v = {}
  for n in string.gmatch(ARGV[4], '%S+') do v[#v + 1] = tonumber(n) end
  pace = {reset = v[1], daily = v[2], sustained = v[3], bwin = v[4], burst = v[5]}
  local DAY = 86400000
  pace.day = now - ((now - pace.reset) % DAY)
  pace.next_reset = pace.day + DAY
  rate = 0
  if pace.sustained > 0 then
    rate = pace.sustained
    if pace.bwin > 0 and pace.next_reset - now <= pace.bwin then rate = pace.burst end
  end
  pace.starts = K.starts(pool, string.format('%d', pace.day))
end
-- When the pool may start again after a start at `last` (see Pacing::next_start_ms).
local function next_start(last)
  local n = last + rate
  if pace and pace.sustained > 0 and pace.bwin > 0 then
    local opens = pace.next_reset - pace.bwin
    if opens > now and opens < n then n = math.min(n, math.max(opens, last + pace.burst)) end
  end
  return n
end
local mlimit = {}
for i = 11 + ntasks, #ARGV, 2 do mlimit[ARGV[i]] = tonumber(ARGV[i + 1]) end
local slots = K.limit(pool)
local lanes = K.lanes(pool)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local models = redis.call('SMEMBERS', lanes)
if #models == 0 then
  redis.call('SREM', K.pools(), pool)
  return 0
end
for _, m in ipairs(models) do
  local model = lane_of(m)
  if model ~= '-' then redis.call('ZREMRANGEBYSCORE', K.limit_model(pool, model), '-inf', now) end
end
-- An operator's pause (`agentq pause`, `stop --now`, `start_paused`) has no
-- end: no timer; `agentq unpause` wakes the pool.
if redis.call('EXISTS', K.fleet_paused_all()) == 1
    or redis.call('SISMEMBER', K.fleet_paused(), pool) == 1 then
  return 0
end
-- While workers are live but none can run this pool (its image is missing
-- on every one), its jobs stay parked: a delivery would only come back.
if redis.call('ZCOUNT', K.servers(), now, '+inf') > 0
    and redis.call('ZCOUNT', K.serves(pool), now, '+inf') == 0 then
  return 0
end
local pttl = redis.call('PTTL', K.backoff(pool))
if pttl > 0 then
  add_timer(NS, pool, now + pttl, false)
  return 0
end
local cap = window
if plimit > 0 then cap = plimit end
local running = redis.call('ZCARD', slots)
local mcount = {}
local granted = 0
while running < cap and granted < ntasks do
  -- The heads of the lanes whose model has room: {id, order, lane, level}.
  local heads, top = {}, -1
  for _, m in ipairs(models) do
    local model, level = lane_of(m)
    local lim = mlimit[model] or 0
    local room = true
    if lim > 0 and model ~= '-' then
      if mcount[model] == nil then mcount[model] = redis.call('ZCARD', K.limit_model(pool, model)) end
      room = mcount[model] < lim
    end
    if room then
      local lane = K.lane(pool, m)
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
          heads[#heads + 1] = {h[1], tonumber(h[2]), m, level}
          if level > top then top = level end
          break
        end
        redis.call('ZREM', lane, h[1])
      end
    end
  end
  -- The highest level first, then the first in line. A head that waited past
  -- the priority age counts one level higher, up to the highest level waiting
  -- now: with one level only, the order alone decides (exact FIFO).
  local best, best_score, best_m, best_level = nil, nil, nil, nil
  for _, hd in ipairs(heads) do
    local level = hd[4]
    if level < top and age_ms > 0 then
      local made = ulid_ms(hd[1])
      if made and now - made >= age_ms then level = level + 1 end
    end
    if best == nil or level > best_level or (level == best_level and hd[2] < best_score) then
      best, best_score, best_m, best_level = hd[1], hd[2], hd[3], level
    end
  end
  if best == nil then break end
  -- The daily limit: a job counted today and not started since (its slot
  -- given back: a busy workspace, a hand-back) is not counted again.
  local day_tag = nil
  if pace and pace.daily > 0 then
    day_tag = string.format('%d', pace.day)
    if redis.call('HGET', JOB_PREFIX .. best, 'paced_day') == day_tag then
      day_tag = nil
    elseif tonumber(redis.call('GET', pace.starts) or '0') >= pace.daily then
      add_timer(NS, pool, pace.next_reset, false)
      break
    end
  end
  if rate > 0 then
    local last = tonumber(redis.call('GET', K.rate(pool)) or '0')
    local after = next_start(last)
    if now < after then
      add_timer(NS, pool, after, false)
      break
    end
    local keep = rate
    if pace then keep = math.max(pace.sustained, pace.burst) end
    redis.call('SET', K.rate(pool), now, 'PX', keep * 2 + 1000)
  end
  if day_tag then
    redis.call('INCR', pace.starts)
    redis.call('PEXPIREAT', pace.starts, pace.next_reset + 60000)
    redis.call('HSET', JOB_PREFIX .. best, 'paced_day', day_tag)
  end
  redis.call('ZREM', K.lane(pool, best_m), best)
  redis.call('ZADD', slots, now + lease, best)
  local best_model = lane_of(best_m)
  if best_model ~= '-' then
    redis.call('ZADD', K.limit_model(pool, best_model), now + lease, best)
    if mcount[best_model] then mcount[best_model] = mcount[best_model] + 1 end
  end
  running = running + 1
  granted = granted + 1
  local job = JOB_PREFIX .. best
  local task = ARGV[10 + granted]
  local seq = redis.call('HINCRBY', job, 'seq', 1)
  redis.call('HSET', job, 'task', task, 'task_at', now, 'parked', '', 'admitted_at', now)
  redis.call('ZADD', K.transit(), now, best)
  push_delivery(task, best, seq, 0, now, false)
end
wake()
if granted > 0 then redis.call('PUBLISH', K.deliver(), granted) end
return granted
