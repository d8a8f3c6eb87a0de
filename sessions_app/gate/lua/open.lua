-- open.lua: the person's live session, or a new one (active if a seat is free and nobody
-- waits, else queued at the back of its lane). New arrivals never overtake the queue.
-- KEYS: see _lib.lua
-- ARGV[3] user key  ARGV[4] lane ("normal"|"priority")  ARGV[5] id for a new session
-- ARGV[6] via ("page" marks presence from a page, "api" presence from a poll)
-- ARGV[7] the caller's own reference for the session ("" for none)
-- returns {session_id, state, position, created(0|1), promoted{}, expired{}, abandoned{},
--          ticket, via, ref}
-- `via` and `ref` are what the FIRST caller sent (the one the session was created for), so
-- that whichever of several racing callers writes the SQL record first writes those (issue
-- 11); false for a session created before they were kept.
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local user, lane, new_id, via, ref = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local expired, abandoned = sweep_due()
local existing = redis.call('GET', user_key(user))
if existing then
  local ended = end_if_due(existing)
  if ended == 'expired' then expired[#expired + 1] = existing end
  if ended == 'abandoned' then abandoned[#abandoned + 1] = existing end
  if ended then existing = false end
end
local promoted = promote_heads()

local function mark_seen(id)
  redis.call('ZADD', K_SEEN, NOW, id)
  if via == 'page' then redis.call('HSET', sess_key(id), 'paged', '1') end
end

if existing then
  local state = redis.call('HGET', sess_key(existing), 'state')
  if state then
    mark_seen(existing)
    keep_alive(existing, user)
    local kept = redis.call('HMGET', sess_key(existing), 'ticket', 'via', 'ref')
    return {existing, state, position_of(existing), 0, promoted, expired, abandoned,
            tonumber(kept[1]), kept[2], kept[3] or (kept[2] and '')}
  end
  redis.call('DEL', user_key(user))
end

local ticket = redis.call('INCR', K_SEQ)
local key = sess_key(new_id)
redis.call('HSET', key, 'user', user, 'state', 'queued', 'lane', lane,
           'ticket', ticket, 'created', tostring(NOW), 'paged', '0', 'over', '0', 'via', via)
-- Most callers send no reference: no field then (memory per queued session, P8).
if ref ~= '' then redis.call('HSET', key, 'ref', ref) end
redis.call('SET', user_key(user), new_id)
mark_seen(new_id)
keep_alive(new_id, user)
stat('opened')

local has_seat = CFG.paused ~= 1 and redis.call('ZCARD', K_QUEUE) == 0
                 and redis.call('ZCARD', K_ACTIVE) < CFG.max_active
-- One journal entry for the record's row, with the state it starts in.
local function journal_open(state)
  journal({'o', new_id, user, state, lane, ticket, via, ref, WALL})
end
if has_seat then
  activate(new_id, false, true)
  journal_open('active')
  return {new_id, 'active', 0, 1, promoted, expired, abandoned, ticket, via, ref}
end
redis.call('ZADD', K_QUEUE, queue_score(lane, ticket), new_id)
journal_open('queued')
return {new_id, 'queued', position_of(new_id), 1, promoted, expired, abandoned, ticket, via, ref}
