-- log_tail_info: how much of a job's output its log tail holds.
-- KEYS[1] log tail stream
-- ARGV: none
-- Returns {chunks kept, chunks ever added (-1: unknown, before Redis 7)}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local kept, added = 0, -1
for i = 1, #info, 2 do
  if info[i] == 'length' then kept = info[i + 1] end
  if info[i] == 'entries-added' then added = info[i + 1] end
end
return {kept, added}
