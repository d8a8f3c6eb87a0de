-- close.lua: ends one session (any reason) and promotes queue heads into freed seats.
-- KEYS: see _lib.lua
-- ARGV[3] session id  ARGV[4] reason ("user"|"admin"|"expired"|"abandoned"|"lost")
-- returns {previous state or "", promoted{}, expired{}, abandoned{}}
local id, reason = ARGV[3], ARGV[4]
local previous = end_session(id, reason)
local expired, abandoned = sweep_due()
local promoted = promote_heads()
return {previous or '', promoted, expired, abandoned}
