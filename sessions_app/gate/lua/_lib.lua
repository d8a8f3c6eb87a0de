-- _lib.lua: shared helpers, prepended by admission.py to every transition script below.
-- KEYS (the same order for every script):
--   1 queue  2 active  3 seen  4 seq  5 config  6 stats  7 slots  8 slotq  9 slotw
--   10 departures  11 waits  12 journal
-- ARGV[1] tagged prefix, e.g. "{chatgate}:" (sess:<id> and user:<u> are built from it)
-- ARGV[2] now in seconds, or "" to read Redis TIME (only tests pass an explicit clock)
local K_QUEUE, K_ACTIVE, K_SEEN, K_SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_CONFIG, K_STATS, K_SLOTS, K_SLOTQ = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_SLOTW, K_DEPARTURES, K_WAITS = KEYS[9], KEYS[10], KEYS[11]
local K_JOURNAL = KEYS[12]
local PREFIX = ARGV[1]

local function read_now(value)
  if value ~= nil and value ~= '' then return tonumber(value) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local NOW = read_now(ARGV[2])
-- The wall clock of the record (journal entries): Redis TIME even when a test moves NOW, so
-- that the SQL record's dates are real dates.
local WALL = string.format('%.6f', read_now(nil))

-- The journal (gate/journal.py): every change of a session's state is appended to one stream
-- in the same script as the change itself, so both happen or neither does. The SQL record is
-- written from it later, in batches, by whichever process flushes first; a process dying
-- right after a transition loses nothing. One field per entry, a JSON array (cheaper for the
-- writer to read than a field per value): ["o", id, user, state, lane, ticket, via, ref, at],
-- ["a", id, over_limit "0"|"1", at], ["c", id, reason, state before, at, note].
local function journal(entry)
  redis.call('XADD', K_JOURNAL, '*', 'j', cjson.encode(entry))
end

-- A session hash outlives its indexes only by accident (a crash between commands cannot
-- happen inside a script, but a manual DEL of an index can); this TTL bounds any leftover.
-- It must outlast the longest idle timeout staff may set (7 days, conf.LIMIT_BOUNDS) plus the
-- grace, or an untouched API session would lose its hash while still holding a seat.
local SESSION_TTL = 9 * 24 * 3600
-- How much one sweep may do, so that no script blocks Redis for long; the sweeper loops.
local SWEEP_BATCH = 200

local function sess_key(id) return PREFIX .. 'sess:' .. id end
local function user_key(user) return PREFIX .. 'user:' .. user end

-- The live limits; these fallbacks equal conf.DEFAULTS and apply only until GateSettings
-- pushes the configured values (at start-up, on every save, and on reconcile).
local CFG_DEFAULTS = {
  max_active = 20, max_queries = 10, idle_timeout = 1800, grace = 120,
  query_wait = 60, lease_ttl = 30, priority_lead = 20, paused = 0, outage_gap = 30,
}
local function load_config()
  local c = {}
  for name, value in pairs(CFG_DEFAULTS) do c[name] = value end
  local raw = redis.call('HGETALL', K_CONFIG)
  for i = 1, #raw, 2 do c[raw[i]] = tonumber(raw[i + 1]) end
  return c
end
local CFG = load_config()
-- Without the config hash (Redis restarted or lost its data) the scripts that admit refuse
-- with NOCONFIG instead of admitting under fallback limits (which would, e.g., reopen a
-- paused gate); admission.py pushes the recorded limits and runs the script again.
local CONFIGURED = redis.call('EXISTS', K_CONFIG) == 1
local NOCONFIG = 'NOCONFIG the live limits are not in Redis'

local function stat(name, amount)
  redis.call('HINCRBY', K_STATS, name, amount or 1)
end

-- Outages do not count against people (issue 8). Every script run with Redis TIME leaves a
-- pulse; a live page renews presence every 15 s, an API client polls every 5 s and the
-- sweeper runs every second, so silence longer than `outage_gap` (30 s) means nobody could
-- reach Redis (it was down or unreachable, or every process was). The first script after
-- such a silence moves every presence mark (`seen`) and every idle clock (`active`) forward
-- by the silence, as if it had not happened, before anything is expired or abandoned.
-- Query leases are not moved: a lease nobody renewed is lost (its holder has stopped).
-- Explicit-clock runs (tests moving time) neither read nor write the pulse.
local function shift_all(key, by)
  local moved = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #moved, 2 do
    redis.call('ZADD', key, tonumber(moved[i + 1]) + by, moved[i])
  end
  return #moved / 2
end

local function absorb_outage()
  if not CONFIGURED or (ARGV[2] ~= nil and ARGV[2] ~= '') then return end
  -- In the config hash (never in stats, whose fields are counters): lost with it, and then
  -- no outage is absorbed, which is the behaviour before this rule, never a wrong shift.
  local pulse = CFG.pulse
  redis.call('HSET', K_CONFIG, 'pulse', string.format('%.3f', NOW))
  if not pulse then return end
  local gap = NOW - pulse
  if gap <= (CFG.outage_gap or 30) then return end
  local people = shift_all(K_SEEN, gap)
  shift_all(K_ACTIVE, gap)
  stat('outages')
  redis.log(redis.LOG_WARNING, string.format(
    'chatgate: %.1f s without a script run; presence and idle clocks of %d moved forward',
    gap, people))
end
absorb_outage()

-- Queue order. Normal lane: 2*ticket. Priority lane: 2*(ticket - lead) - 1, so a priority
-- arrival goes ahead of at most `lead` people of the normal lane who came before it, and
-- nobody in the normal lane is ever overtaken by more than `lead` people: no starvation,
-- and ZRANK stays the exact place in line. Odd/even keeps every score distinct.
local function queue_score(lane, ticket)
  if lane == 'priority' then return 2 * (ticket - CFG.priority_lead) - 1 end
  return 2 * ticket
end

local function position_of(id)
  local rank = redis.call('ZRANK', K_QUEUE, id)
  if rank then return rank + 1 end
  return 0
end

-- `quiet`: the caller journals the activation itself (open.lua, as part of the open entry).
local function activate(id, over_limit, quiet)
  local key = sess_key(id)
  redis.call('ZREM', K_QUEUE, id)
  redis.call('ZADD', K_ACTIVE, NOW, id)
  local created = tonumber(redis.call('HGET', key, 'created')) or NOW
  redis.call('HSET', key, 'state', 'active', 'activated', tostring(NOW),
             'over', over_limit and '1' or '0')
  redis.call('LPUSH', K_WAITS, string.format('%.3f:%.3f', NOW, NOW - created))
  redis.call('LTRIM', K_WAITS, 0, 1999)
  stat('admissions')
  if not quiet then journal({'a', id, over_limit and '1' or '0', WALL}) end
end

-- Removes a session from every index. Returns its state before, or false if it was not live.
-- `note` (staff closing someone) goes to the record with the reason.
local function end_session(id, reason, note)
  local key = sess_key(id)
  local fields = redis.call('HMGET', key, 'state', 'user')
  local state, user = fields[1], fields[2]
  redis.call('ZREM', K_QUEUE, id)
  redis.call('ZREM', K_ACTIVE, id)
  redis.call('ZREM', K_SEEN, id)
  if not state then return false end
  if state == 'active' then
    redis.call('LPUSH', K_DEPARTURES, tostring(NOW))
    redis.call('LTRIM', K_DEPARTURES, 0, 49)
  end
  if user and redis.call('GET', user_key(user)) == id then redis.call('DEL', user_key(user)) end
  redis.call('DEL', key)
  stat('closed_' .. reason)
  journal({'c', id, reason, state, WALL, note or ''})
  return state
end

-- Fills free seats from the head of the queue. Paused admissions promote nobody.
local function promote_heads()
  local promoted = {}
  if CFG.paused == 1 then return promoted end
  local free = CFG.max_active - redis.call('ZCARD', K_ACTIVE)
  if free <= 0 then return promoted end
  for _, id in ipairs(redis.call('ZRANGE', K_QUEUE, 0, free - 1)) do
    activate(id, false)
    stat('promotions')
    promoted[#promoted + 1] = id
  end
  return promoted
end

-- A waiting query is "<session id>:<n>". Its own lease id and the time by which it promised
-- to poll again sit in its session's hash (field "w:<waiter>"), so that the script that frees a
-- slot can grant it to the front waiter at once (hand_over below).
local function waiter_session(waiter) return string.match(waiter, '^(.*):[^:]*$') or waiter end

local function forget_waiter(waiter)
  redis.call('ZREM', K_SLOTQ, waiter)
  redis.call('ZREM', K_SLOTW, waiter)
  redis.call('HDEL', sess_key(waiter_session(waiter)), 'w:' .. waiter)
end

-- A granted lease is never reclaimed before NOW + hold, renewed or not: a frozen holder's
-- request may still be generating at the model server until then (issue 8, item 9).
local function grant(sid, waiter, lease, hold)
  local deadline = NOW + CFG.lease_ttl
  forget_waiter(waiter)
  redis.call('ZADD', K_SLOTS, math.max(deadline, NOW + hold), lease)
  redis.call('HSET', sess_key(sid), 'lease', lease, 'lease_waiter', waiter)
  stat('queries_started')
  return deadline
end

-- Dead query leases and dead query waiters (their process stopped renewing or polling).
local function reclaim_slots()
  local reclaimed = redis.call('ZREMRANGEBYSCORE', K_SLOTS, '-inf', NOW)
  if reclaimed > 0 then stat('leases_reclaimed', reclaimed) end
  for _, waiter in ipairs(redis.call('ZRANGEBYSCORE', K_SLOTW, '-inf', NOW)) do
    forget_waiter(waiter)
  end
  return reclaimed
end

-- Grants the free slots to the waiting queries that would get them by asking, in the same
-- order as acquire_slot.lua (ticket order; the first waiting query of a session without a
-- live lease), and publishes each grant on the handoff channel (chat/handoff.py): the waiter
-- starts without asking again. Stops at a waiter that is overdue for its poll (its process
-- may be gone) or stored no lease: that one keeps its place and is served when it asks, as
-- before. A handed-over lease has no hold until its waiter takes it (acquire_slot.lua,
-- renew_slot.lua): a waiter whose process died meanwhile ties its slot up for one lease TTL,
-- as an unrenewed lease does, not for a whole generation cap. Returns the grants made.
local function hand_over()
  local free = CFG.max_queries - redis.call('ZCARD', K_SLOTS)
  local granted = {}
  if not CONFIGURED or free <= 0 then return granted end
  local blocked = {}
  for _, waiter in ipairs(redis.call('ZRANGE', K_SLOTQ, 0, -1)) do
    local sid = waiter_session(waiter)
    if not blocked[sid] then
      blocked[sid] = true
      local fields = redis.call('HMGET', sess_key(sid), 'lease', 'state', 'w:' .. waiter)
      if not (fields[1] and redis.call('ZSCORE', K_SLOTS, fields[1])) then
        if fields[2] ~= 'active' then
          forget_waiter(waiter)  -- its poll would be told not_active
        else
          local lease, due = string.match(fields[3] or '', '^(%S+) (%S+)$')
          if not lease or tonumber(due) < NOW then break end
          local deadline = grant(sid, waiter, lease, 0)
          granted[#granted + 1] = {waiter, lease, tostring(deadline)}
          free = free - 1
          if free <= 0 then break end
        end
      end
    end
  end
  if #granted > 0 then
    redis.call('PUBLISH', PREFIX .. 'slotfree', cjson.encode(granted))
  end
  return granted
end

-- Expiry is a pure function of NOW: idle since the timeout (inclusive), unseen since the grace.
local function sweep_due()
  local expired, abandoned = {}, {}
  local idle_cutoff = NOW - CFG.idle_timeout
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', idle_cutoff,
                                 'LIMIT', 0, SWEEP_BATCH)) do
    if end_session(id, 'expired') then expired[#expired + 1] = id end
  end
  local unseen_cutoff = NOW - CFG.grace
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', unseen_cutoff,
                                 'LIMIT', 0, SWEEP_BATCH)) do
    local fields = redis.call('HMGET', sess_key(id), 'state', 'paged')
    if fields[1] == 'queued' or (fields[1] == 'active' and fields[2] == '1') then
      if end_session(id, 'abandoned') then abandoned[#abandoned + 1] = id end
    else
      -- An active session no page ever attached to (API) ends only by close or idle expiry.
      redis.call('ZREM', K_SEEN, id)
    end
  end
  local reclaimed = reclaim_slots()
  return expired, abandoned, reclaimed
end

-- A session past its own deadline is ended before anything else touches it, so that no
-- touch or open can revive it. Returns the reason it ended, or false.
local function end_if_due(id)
  local fields = redis.call('HMGET', sess_key(id), 'state', 'paged')
  local state, paged = fields[1], fields[2]
  if not state then return false end
  local last = redis.call('ZSCORE', K_ACTIVE, id)
  if state == 'active' and last and tonumber(last) <= NOW - CFG.idle_timeout then
    end_session(id, 'expired')
    return 'expired'
  end
  local seen = redis.call('ZSCORE', K_SEEN, id)
  if seen and tonumber(seen) <= NOW - CFG.grace and (state == 'queued' or paged == '1') then
    end_session(id, 'abandoned')
    return 'abandoned'
  end
  return false
end

local function keep_alive(id, user)
  redis.call('EXPIRE', sess_key(id), SESSION_TTL)
  if user then redis.call('EXPIRE', user_key(user), SESSION_TTL) end
end
