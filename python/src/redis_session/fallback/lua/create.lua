-- CREATE key [SUBJECT s] [IDLE ms] [ABSOLUTE ms] [GRACE ms] [META ...] [DATA ...]
-- KEYS[1] session; ARGV: single, prefix, tenant, then the defaults (tenant
-- settings over the store's options; single mode reads the tenant's settings
-- here instead): idle, absolute, grace, max-data-bytes, max-fields, max-meta,
-- max-per-subject, on-limit (reject|evict-oldest), revoked-retention; then
-- the request: subject, idle, absolute, grace ('' = default), n meta, meta
-- pairs, data field/value pairs.
-- Reply: {created, idle, absolute deadline (0: none), grace} of the new
-- session (version 1, last access = created); EXISTS; TOOBIG; LIMIT; WRONGTYPE.
-- In single mode the subject's index (a sorted set of keys scored by
-- created) is kept here, with the session cap; on a cluster the caller
-- does both around this script (see backend.py).
local key = KEYS[1]
local single, prefix, tenant = ARGV[1] == '1', ARGV[2], ARGV[3]
local cfg = {idle = ARGV[4], absolute = ARGV[5], grace = ARGV[6], maxdata = ARGV[7],
  maxpersubject = ARGV[10], onlimit = ARGV[11]}
if single then
  overlay(prefix, tenant, {'idle', 'absolute', 'grace', 'maxdata', 'maxpersubject', 'onlimit'}, cfg)
end
local maxfields, maxmeta, retention = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[12])
local subject = ARGV[13]
local idle = tonumber(ARGV[14]) or tonumber(cfg.idle)
local absolute = tonumber(ARGV[15]) or tonumber(cfg.absolute)
local grace = tonumber(ARGV[16]) or tonumber(cfg.grace)
local j = 17
local nmeta = tonumber(ARGV[j]); j = j + 1
local m = {}
for _ = 1, nmeta do
  m[ARGV[j]] = ARGV[j + 1]
  j = j + 2
end
local data, order = {}, {}
while j < #ARGV do
  if data[ARGV[j]] == nil then order[#order + 1] = ARGV[j] end
  data[ARGV[j]] = ARGV[j + 1]
  j = j + 2
end
local dn, db = #order, 0
local hset = {}
for _, f in ipairs(order) do
  db = db + #f + #data[f]
  hset[#hset + 1] = 'd:' .. f
  hset[#hset + 1] = data[f]
end
local err = check_limits(subject, m, dn, db, tonumber(cfg.maxdata), maxfields, maxmeta)
if err then return redis.error_reply(err) end
local now = now_ms()
local t = redis.call('TYPE', key)['ok']
if t == 'hash' then
  local h, e = load(key)
  if not h then return e end
  if state(h, now) ~= 'expired' then return redis.error_reply('EXISTS session already exists') end
elseif t ~= 'none' then
  return redis.error_reply(WRONGTYPE)
end
local idx
if single and subject ~= '' then
  idx = index_key(prefix, tenant, subject)
  local cap = tonumber(cfg.maxpersubject) or 0
  local members
  if cap > 0 then
    members = redis.call('ZRANGE', idx, 0, -1)
  else
    -- no cap to enforce: look at a few of the oldest entries, so entries of
    -- sessions that ended leave the index over time
    members = redis.call('ZRANGE', idx, 0, 3)
  end
  local live, dead = {}, {}
  for _, k in ipairs(members) do
    local lh = live_of(k, subject, now)
    if lh then live[#live + 1] = {k, lh} else dead[#dead + 1] = k end
  end
  if #dead > 0 then redis.call('ZREM', idx, unpack(dead)) end
  if cap > 0 and #live >= cap then
    if cfg.onlimit ~= 'evict-oldest' then
      return redis.error_reply('LIMIT subject has ' .. #live .. ' sessions, tenant allows ' .. cap)
    end
    table.sort(live, function(a, b)
      if a[2].c ~= b[2].c then return a[2].c < b[2].c end
      return a[1] < b[1]
    end)
    for n = 1, #live + 1 - cap do
      revoke(live[n][1], live[n][2], now, 'evicted: session limit', retention)
      redis.call('ZREM', idx, live[n][1])
    end
  end
end
local ad = 0
if absolute > 0 then ad = now + absolute end
hset[#hset + 1] = 'v'; hset[#hset + 1] = '1'
hset[#hset + 1] = 'c'; hset[#hset + 1] = int(now)
hset[#hset + 1] = 'la'; hset[#hset + 1] = int(now)
hset[#hset + 1] = 'i'; hset[#hset + 1] = int(idle)
hset[#hset + 1] = 'ad'; hset[#hset + 1] = int(ad)
hset[#hset + 1] = 'g'; hset[#hset + 1] = int(grace)
hset[#hset + 1] = 's'; hset[#hset + 1] = subject
hset[#hset + 1] = 'dn'; hset[#hset + 1] = int(dn)
hset[#hset + 1] = 'db'; hset[#hset + 1] = int(db)
if nmeta > 0 and next(m) then
  hset[#hset + 1] = 'm'; hset[#hset + 1] = cmsgpack.pack(meta_flat(m))
end
if t ~= 'none' then redis.call('DEL', key) end
redis.call('HSET', key, unpack(hset))
local gu = now + idle + grace
if ad > 0 and ad < gu then gu = ad end
redis.call('PEXPIREAT', key, int(gu))
if idx then
  local fresh = redis.call('EXISTS', idx) == 0
  redis.call('ZADD', idx, int(now), key)
  -- the index lives as long as the longest absolute deadline in it
  if ad == 0 then
    redis.call('PERSIST', idx)
  elseif fresh then
    redis.call('PEXPIREAT', idx, int(ad))
  else
    redis.call('PEXPIREAT', idx, int(ad), 'GT')
  end
end
return {now, idle, ad, grace}
