-- release_slot.lua: compare-and-delete of one lease (only this exact random id is removed,
-- never a slot someone else now holds), and/or withdrawal of a waiting query.
-- KEYS: see _lib.lua
-- ARGV[3] lease id or ""  ARGV[4] session id  ARGV[5] waiter id or ""
-- returns {released(0|1)}
local lease, sid, waiter = ARGV[3], ARGV[4], ARGV[5]
local released = 0
if lease ~= '' then
  released = redis.call('ZREM', K_SLOTS, lease)
  if redis.call('HGET', sess_key(sid), 'lease') == lease then
    redis.call('HDEL', sess_key(sid), 'lease')
  end
end
if waiter ~= '' then
  redis.call('ZREM', K_SLOTQ, waiter)
  redis.call('ZREM', K_SLOTW, waiter)
end
return {released}
