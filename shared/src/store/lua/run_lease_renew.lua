-- run_lease_renew: extends a run lease, if the token holds it.
-- KEYS[1] run lease
-- ARGV[1] token
-- ARGV[2] ttl (ms)
-- Returns 1 when extended, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
