-- acquire_slot.lua: asks for a generation slot for one query of an active session.
-- Waiting queries are served in ticket order; a query is eligible only when its session
-- holds no live lease and no earlier query of the same session waits (one in flight per
-- session, answered in the order sent). The caller polls with the same waiter id; a waiter
-- that stops polling for one lease TTL is dropped.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] waiter id ("<session id>:<n>")  ARGV[5] lease id if granted
-- ARGV[6] hold: seconds the generation may run at most ("" or 0: no cap). A granted lease is
--         never reclaimed before NOW + hold, renewed or not: a frozen holder's request may
--         still be generating at the model server until then (issue 8, item 9).
-- returns {"granted", lease id, deadline} | {"wait", place among eligible waiting queries,
--          blocked by own session (0|1)} | {"not_active"}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local sid, waiter, lease = ARGV[3], ARGV[4], ARGV[5]
local hold = tonumber(ARGV[6]) or 0
reclaim_slots()

if redis.call('HGET', sess_key(sid), 'state') ~= 'active' then
  redis.call('ZREM', K_SLOTQ, waiter)
  redis.call('ZREM', K_SLOTW, waiter)
  return {'not_active'}
end

if not redis.call('ZSCORE', K_SLOTQ, waiter) then
  redis.call('ZADD', K_SLOTQ, redis.call('INCR', K_SEQ), waiter)
end
redis.call('ZADD', K_SLOTW, NOW + CFG.lease_ttl, waiter)

local free = CFG.max_queries - redis.call('ZCARD', K_SLOTS)
local blocked = {}
local place = 0
for _, other in ipairs(redis.call('ZRANGE', K_SLOTQ, 0, -1)) do
  local other_sid = string.match(other, '^(.*):[^:]*$') or other
  local eligible = false
  if not blocked[other_sid] then
    blocked[other_sid] = true
    local held = redis.call('HGET', sess_key(other_sid), 'lease')
    eligible = not (held and redis.call('ZSCORE', K_SLOTS, held))
  end
  if eligible then place = place + 1 end
  if other == waiter then
    if eligible and place <= free then
      local deadline = NOW + CFG.lease_ttl
      redis.call('ZREM', K_SLOTQ, waiter)
      redis.call('ZREM', K_SLOTW, waiter)
      redis.call('ZADD', K_SLOTS, math.max(deadline, NOW + hold), lease)
      redis.call('HSET', sess_key(sid), 'lease', lease)
      stat('queries_started')
      return {'granted', lease, tostring(deadline)}
    end
    if eligible then return {'wait', place, 0} end
    return {'wait', place + 1, 1}
  end
end
return {'wait', place + 1, 0}
