-- Snippet unique_key: key_held(key, job) says whether idempotency key `key`,
-- held by job `job` (its hash's key), still refuses a new job. A key made
-- by `--unique` (it starts 'unique ', which user keys cannot: they hold no
-- whitespace; agentq_domain::flow::UNIQUE_PREFIX) holds only while its job
-- is not final (queued, waiting, running...: a job still in {ns}:new has no
-- state on its hash and is queued or waiting); any other key holds until
-- the job is purged.
-- KEYS: none
-- ARGV: none
--- @include "enums"
local function key_held(key, job)
  if string.sub(key, 1, 7) ~= 'unique ' then return true end
  local st = redis.call('HGET', job, 'state')
  return not (st and FINAL[st])
end
