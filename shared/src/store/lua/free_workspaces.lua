-- free_workspaces: for each workspace with a line whose lease is gone, the
-- first in line goes to its pool's lane.
-- KEYS: none
-- ARGV[1] namespace
-- ARGV[2] job key prefix
-- Returns how many moved.
local NS, JOB_PREFIX = ARGV[1], ARGV[2]
--- @include "park"
local moved = 0
for _, ws in ipairs(redis.call('SMEMBERS', K.queued_workspaces())) do
  if redis.call('EXISTS', K.workspace_lease(ws)) == 0 then
    local line = K.workspace_waiters(ws)
    local head = redis.call('ZRANGE', line, 0, 0)[1]
    if head then
      redis.call('ZREM', line, head)
      park_job(JOB_PREFIX .. head, head, '')
      moved = moved + 1
    end
  end
  if redis.call('EXISTS', K.workspace_waiters(ws)) == 0 then redis.call('SREM', K.queued_workspaces(), ws) end
end
return moved
