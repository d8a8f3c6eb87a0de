-- touch.lua: presence (a page is connected), poll (an API call about the session) or
-- activity (a chat message: also presence). A session already past its deadline is ended
-- instead of revived.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] kind ("presence"|"poll"|"activity")
-- returns {state ("queued"|"active"|"none"|"expired"|"abandoned"), position, promoted{}}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local id, kind = ARGV[3], ARGV[4]
local key = sess_key(id)

local ended = end_if_due(id)
if ended then return {ended, 0, promote_heads()} end

local fields = redis.call('HMGET', key, 'state', 'user')
local state, user = fields[1], fields[2]
if not state then return {'none', 0, {}} end

redis.call('ZADD', K_SEEN, NOW, id)
if kind == 'presence' or kind == 'activity' then redis.call('HSET', key, 'paged', '1') end
if kind == 'activity' and state == 'active' then
  redis.call('ZADD', K_ACTIVE, 'XX', NOW, id)
end
keep_alive(id, user)
return {state, position_of(id), {}}
