-- notify_lease: takes the notify lease (one sender in the fleet), or renews
-- it when this worker holds it already.
-- KEYS[1] the notify lease
-- ARGV[1] worker id
-- ARGV[2] TTL (ms)
-- Returns 1 when this worker holds the lease now, else 0.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
