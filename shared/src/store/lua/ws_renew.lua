-- ws_renew: extends a workspace lease, if the job holds it.
-- KEYS[1] workspace lease
-- ARGV[1] job id
-- ARGV[2] ttl (ms)
-- Returns 1 when extended, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
