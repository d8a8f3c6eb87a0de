-- acquire_slot.lua: asks for a generation slot for one query of an active session.
-- Waiting queries are served in ticket order; a query is eligible only when its session
-- holds no live lease and no earlier query of the same session waits (one in flight per
-- session, answered in the order sent). The caller polls with the same waiter id; a waiter
-- that stops polling for one lease TTL is dropped. A slot freed later is granted to the front
-- waiter by the script that frees it (hand_over, _lib.lua): the waiter's next poll, or the
-- handoff channel, tells it so.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] waiter id ("<session id>:<n>")  ARGV[5] lease id if granted
-- ARGV[6] hold: seconds the generation may run at most ("" or 0: no cap)
-- ARGV[7] seconds within which the waiter will poll again ("": one lease TTL); a slot is
--         handed to it only until then
-- returns {"granted", lease id, deadline, wait limit, lease ttl}
--       | {"wait", place among eligible waiting queries, blocked by own session (0|1),
--          wait limit, lease ttl}
--       | {"not_active", "", "", wait limit, lease ttl}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local sid, waiter, lease = ARGV[3], ARGV[4], ARGV[5]
local hold = tonumber(ARGV[6]) or 0
local poll_within = tonumber(ARGV[7]) or CFG.lease_ttl
local limits = {tostring(CFG.query_wait), tostring(CFG.lease_ttl)}
local function reply(a, b, c) return {a, b, c, limits[1], limits[2]} end
-- A slot freed by expiry goes on to the front waiter at once, as a released one does.
if reclaim_slots() > 0 then hand_over() end

if redis.call('HGET', sess_key(sid), 'state') ~= 'active' then
  forget_waiter(waiter)
  return reply('not_active', '', '')
end

-- Handed over while this waiter slept (or the grant's message was missed): it holds the slot,
-- and takes its hold now.
local held = redis.call('HMGET', sess_key(sid), 'lease', 'lease_waiter')
local own = held[2] == waiter and redis.call('ZSCORE', K_SLOTS, held[1])
if own then
  redis.call('ZADD', K_SLOTS, 'XX', math.max(tonumber(own), NOW + hold), held[1])
  return reply('granted', held[1], tostring(math.min(tonumber(own), NOW + CFG.lease_ttl)))
end

if not redis.call('ZSCORE', K_SLOTQ, waiter) then
  redis.call('ZADD', K_SLOTQ, redis.call('INCR', K_SEQ), waiter)
end
-- Dropped once silent past its promised poll and one lease TTL, whichever is later.
redis.call('ZADD', K_SLOTW, NOW + math.max(CFG.lease_ttl, poll_within), waiter)
redis.call('HSET', sess_key(sid), 'w:' .. waiter, string.format('%s %.3f', lease, NOW + poll_within))

local free = CFG.max_queries - redis.call('ZCARD', K_SLOTS)
local blocked = {}
local place = 0
for _, other in ipairs(redis.call('ZRANGE', K_SLOTQ, 0, -1)) do
  local other_sid = waiter_session(other)
  local eligible = false
  if not blocked[other_sid] then
    blocked[other_sid] = true
    local held = redis.call('HGET', sess_key(other_sid), 'lease')
    eligible = not (held and redis.call('ZSCORE', K_SLOTS, held))
  end
  if eligible then place = place + 1 end
  if other == waiter then
    if eligible and place <= free then
      return reply('granted', lease, tostring(grant(sid, waiter, lease, hold)))
    end
    if eligible then return reply('wait', place, 0) end
    return reply('wait', place + 1, 1)
  end
end
return reply('wait', place + 1, 0)
