-- close.lua: ends one session (any reason) and promotes queue heads into freed seats.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] reason ("user"|"admin"|"expired"|"abandoned"|"lost")
-- ARGV[5] only if in this state ("queued"|"active"), or "" for any: the check and the close
--         are one step, so staff removing someone from the line never closes a person who was
--         promoted a moment before
-- ARGV[6] a note for the person (staff), kept in the journal entry for the record, or ""
-- returns {previous state or "", promoted{}, expired{}, abandoned{}, refused state or ""}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local id, reason, only_if, note = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if only_if ~= '' then
  local state = redis.call('HGET', sess_key(id), 'state')
  if state ~= only_if then return {'', {}, {}, {}, state or 'none'} end
end
local previous = end_session(id, reason, note)
local expired, abandoned = sweep_due()
local promoted = promote_heads()
return {previous or '', promoted, expired, abandoned, ''}
