-- sweep.lua: expires idle sessions, abandons unseen ones, reclaims dead query leases (and hands
-- the slots on to waiting queries), then promotes. Bounded per call (SWEEP_BATCH); the
-- sweeper calls it again while work remains.
-- KEYS: see _lib.lua
-- returns {expired{}, abandoned{}, promoted{}, reclaimed leases}
if not CONFIGURED then return redis.error_reply(NOCONFIG) end
local expired, abandoned, reclaimed = sweep_due()
hand_over()
local promoted = promote_heads()
return {expired, abandoned, promoted, reclaimed}
