-- renew_slot.lua: extends a live lease by one TTL. A lease past its deadline is gone for good
-- (its slot may already serve someone else), so renewing it fails. A deadline further out
-- (the generation cap set at grant, acquire_slot.lua) is never shortened; ARGV[4] (a hold in
-- seconds, optional) is the cap of a lease handed over by hand_over (_lib.lua), taken by its
-- waiter as it starts.
-- KEYS: see _lib.lua
-- ARGV[3] lease id  ARGV[4] hold or ""
-- returns {1, new deadline} | {0}
local lease = ARGV[3]
local hold = tonumber(ARGV[4]) or 0
local deadline = redis.call('ZSCORE', K_SLOTS, lease)
if not deadline or tonumber(deadline) <= NOW then
  if redis.call('ZREM', K_SLOTS, lease) > 0 then hand_over() end
  return {0}
end
local renewed = math.max(NOW + CFG.lease_ttl, tonumber(deadline), NOW + hold)
redis.call('ZADD', K_SLOTS, 'XX', renewed, lease)
return {1, tostring(renewed)}
