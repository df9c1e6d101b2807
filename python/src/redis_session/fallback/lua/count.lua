-- The live sessions of a tenant held by this server: SCAN of
-- <prefix><tenant>:* (hashes only), each key's state checked. No keys;
-- ARGV: the SCAN pattern (<prefix><tenant>:* with the prefix's glob
-- characters escaped), the length of <prefix><tenant>:. O(keys of the
-- server) in one call: for dashboards, not hot paths.
local pat = ARGV[1]
local skip = tonumber(ARGV[2]) + 1
local now = now_ms()
local cursor, n = '0', 0
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pat, 'COUNT', 1000, 'TYPE', 'hash')
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local sid = string.sub(k, skip)
    if #sid >= 16 and #sid <= 128 and not string.find(sid, '[^%w_%-]') then
      local h = load(k)
      if h then
        local st = state(h, now)
        if st == 'active' or st == 'grace' then n = n + 1 end
      end
    end
  end
until cursor == '0'
return n
