-- release_slot.lua: compare-and-delete of one lease (only this exact random id is removed,
-- never a slot someone else now holds), and/or withdrawal of a waiting query.
-- KEYS: see _lib.lua
-- ARGV[3] lease id or ""  ARGV[4] session id  ARGV[5] waiter id or ""
-- Publishes on ARGV[1] .. 'slotfree' (keys.py slot_free) when a lease or a waiting place was
-- given up, so that waiting queries in every process ask again at once (chat/handoff.py).
-- returns {released(0|1)}
local lease, sid, waiter = ARGV[3], ARGV[4], ARGV[5]
local released = 0
local withdrawn = 0
if lease ~= '' then
  released = redis.call('ZREM', K_SLOTS, lease)
  if redis.call('HGET', sess_key(sid), 'lease') == lease then
    redis.call('HDEL', sess_key(sid), 'lease')
  end
end
if waiter ~= '' then
  withdrawn = redis.call('ZREM', K_SLOTQ, waiter)
  redis.call('ZREM', K_SLOTW, waiter)
end
if released + withdrawn > 0 then
  redis.call('PUBLISH', ARGV[1] .. 'slotfree', '1')
end
return {released}
