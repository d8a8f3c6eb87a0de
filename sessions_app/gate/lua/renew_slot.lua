-- renew_slot.lua: extends a live lease by one TTL. A lease past its deadline is gone for good
-- (its slot may already serve someone else), so renewing it fails. A deadline further out
-- (the generation cap set at grant, acquire_slot.lua) is never shortened.
-- KEYS: see _lib.lua
-- ARGV[3] lease id
-- returns {1, new deadline} | {0}
local lease = ARGV[3]
local deadline = redis.call('ZSCORE', K_SLOTS, lease)
if not deadline or tonumber(deadline) <= NOW then
  redis.call('ZREM', K_SLOTS, lease)
  return {0}
end
local renewed = math.max(NOW + CFG.lease_ttl, tonumber(deadline))
redis.call('ZADD', K_SLOTS, 'XX', renewed, lease)
return {1, tostring(renewed)}
