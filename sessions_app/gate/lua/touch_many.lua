-- touch_many.lua: presence for many sessions at once (every open page of one process, every
-- PRESENCE_HEARTBEAT_SECONDS): for each id exactly what touch.lua does for kind "presence",
-- in one call instead of one per page. Ids that no longer exist are skipped.
-- KEYS: see _lib.lua
-- ARGV[3..] session ids
-- returns {closed {id, state, id, state, ...}, promoted{}}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local closed = {}
local ended_any = false
for i = 3, #ARGV do
  local id = ARGV[i]
  local ended = end_if_due(id)
  if ended then
    closed[#closed + 1] = id
    closed[#closed + 1] = ended
    ended_any = true
  else
    local key = sess_key(id)
    local fields = redis.call('HMGET', key, 'state', 'user')
    local state, user = fields[1], fields[2]
    if state then
      redis.call('ZADD', K_SEEN, NOW, id)
      redis.call('HSET', key, 'paged', '1')
      keep_alive(id, user)
    end
  end
end
-- touch.lua promotes after each ending; promoting once after all of them fills the same
-- seats in the same queue order.
local promoted = {}
if ended_any then promoted = promote_heads() end
return {closed, promoted}
