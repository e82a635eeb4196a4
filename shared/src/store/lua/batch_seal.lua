-- batch_seal: an enqueue of batch jobs is over (see store::flow): the batch
-- may complete now; if all its jobs already ended, its `batch_done` event is
-- added here (once: flow_batch_check).
-- KEYS: none (builds every key with K)
-- ARGV[1] namespace
-- ARGV[2] events max length
-- ARGV[3] batch name
-- Returns {jobs, done}.
local NS = ARGV[1]
--- @include "flow_end"
local FK = keys_for(NS)
redis.call('HSET', FK.batch(ARGV[3]), 'sealed', 1)
flow_batch_check(NS, ARGV[3], tonumber(ARGV[2]))
return {redis.call('SCARD', FK.batch_jobs(ARGV[3])), redis.call('HLEN', FK.batch_done(ARGV[3]))}
