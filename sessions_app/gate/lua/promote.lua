-- promote.lua: staff promotion of one queued session.
-- "admit": active now, even above the limit or while paused (labelled over=1 if so);
-- "front": moved to the head of the queue.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] how ("admit"|"front")
-- returns {outcome ("admitted"|"front"|"not_queued"), over_limit(0|1)}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local id, how = ARGV[3], ARGV[4]
if end_if_due(id) then return {'not_queued', 0} end
if redis.call('HGET', sess_key(id), 'state') ~= 'queued' then return {'not_queued', 0} end

if how == 'admit' then
  local over = CFG.paused == 1 or redis.call('ZCARD', K_ACTIVE) >= CFG.max_active
  activate(id, over)
  stat('staff_admits')
  return {'admitted', over and 1 or 0}
end

local head = redis.call('ZRANGE', K_QUEUE, 0, 0, 'WITHSCORES')
if head[1] ~= id then
  redis.call('ZADD', K_QUEUE, tonumber(head[2]) - 1, id)
end
stat('staff_fronts')
return {'front', 0}
