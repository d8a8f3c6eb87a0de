-- release_slot.lua: compare-and-delete of one lease (only this exact random id is removed,
-- never a slot someone else now holds), and/or withdrawal of a waiting query. A slot this
-- frees is granted at once to the front waiting query (hand_over, _lib.lua), which hears of
-- it on the handoff channel (chat/handoff.py).
-- KEYS: see _lib.lua
-- ARGV[3] lease id or ""  ARGV[4] session id  ARGV[5] waiter id or ""
-- returns {released (0|1), grants made: {waiter id, lease id, deadline}...}
local lease, sid, waiter = ARGV[3], ARGV[4], ARGV[5]
local released = 0
local withdrawn = 0
if lease ~= '' then
  released = redis.call('ZREM', K_SLOTS, lease)
  if redis.call('HGET', sess_key(sid), 'lease') == lease then
    redis.call('HDEL', sess_key(sid), 'lease', 'lease_waiter')
  end
end
if waiter ~= '' then
  withdrawn = redis.call('ZREM', K_SLOTQ, waiter)
  forget_waiter(waiter)
end
local granted = {}
if released + withdrawn > 0 then granted = hand_over() end
return {released, granted}
