-- set_limits.lua: writes the live limits and applies them at once: a raised seat limit or a
-- resume promotes queue heads now, and a raised query limit hands the new slots to waiting
-- queries; a lowered one evicts nobody (promotions and grants just stop).
-- KEYS: see _lib.lua
-- ARGV[3..] field, value pairs (max_active, max_queries, idle_timeout, grace, query_wait,
--           lease_ttl, priority_lead, paused)
-- returns {promoted{}}
for i = 3, #ARGV, 2 do
  redis.call('HSET', K_CONFIG, ARGV[i], ARGV[i + 1])
end
CFG = load_config()
CONFIGURED = true
local promoted = promote_heads()
hand_over()
return {promoted}
