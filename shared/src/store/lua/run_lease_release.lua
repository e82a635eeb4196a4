-- run_lease_release: drops a run lease, if the token holds it.
-- KEYS[1] run lease
-- ARGV[1] token
-- Returns 1 when dropped, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
