-- CAS key version [DATA ...]: replaces the whole data map if the version matches.
-- KEYS[1] session; ARGV: single, prefix, tenant, max-data-bytes, max-fields,
-- max-meta, version, data field/value pairs.
-- Reply: the new version; nil; CONFLICT <v>; TOOBIG; REVOKED. Does not renew.
local key = KEYS[1]
local lim = {maxdata = ARGV[4]}
if ARGV[1] == '1' then overlay(ARGV[2], ARGV[3], {'maxdata'}, lim) end
local maxdata, maxfields, maxmeta = tonumber(lim.maxdata), tonumber(ARGV[5]), tonumber(ARGV[6])
local expected = tonumber(ARGV[7])
local now = now_ms()
local h, _, e = open_live(key, now)
if not h then return e or false end
if expected ~= h.v then return redis.error_reply('CONFLICT ' .. int(h.v)) end
local new, order = {}, {}
for j = 8, #ARGV - 1, 2 do
  if new[ARGV[j]] == nil then order[#order + 1] = ARGV[j] end
  new[ARGV[j]] = ARGV[j + 1]
end
local dn, db = #order, 0
local hset = {}
for _, f in ipairs(order) do
  db = db + #f + #new[f]
  hset[#hset + 1] = 'd:' .. f
  hset[#hset + 1] = new[f]
end
local err = check_limits(h.s, meta_decode(h.m), dn, db, maxdata, maxfields, maxmeta)
if err then return redis.error_reply(err) end
if h.dn > 0 then
  local names = redis.call('HKEYS', key)
  local hdel = {}
  for _, f in ipairs(names) do
    if string.byte(f, 1) == 100 and string.byte(f, 2) == 58 and new[string.sub(f, 3)] == nil then
      hdel[#hdel + 1] = f
      if #hdel == 1000 then redis.call('HDEL', key, unpack(hdel)); hdel = {} end
    end
  end
  if #hdel > 0 then redis.call('HDEL', key, unpack(hdel)) end
end
local v = bump(h.v)
hset[#hset + 1] = 'v'; hset[#hset + 1] = int(v)
hset[#hset + 1] = 'dn'; hset[#hset + 1] = int(dn)
hset[#hset + 1] = 'db'; hset[#hset + 1] = int(db)
redis.call('HSET', key, unpack(hset))
return v
