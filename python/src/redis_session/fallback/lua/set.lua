-- SET key [IFVERSION v] [META ...] [UNSET ...] [DATA ...]: field-level write.
-- KEYS[1] session; ARGV: single (1: read tenant settings here), prefix, tenant,
-- max-data-bytes, max-fields, max-meta, if-version ('' = none), n meta,
-- meta name/value pairs, n unset, unset names, data field/value pairs.
-- Reply: the new version; nil; CONFLICT <v>; TOOBIG; REVOKED. Does not renew.
local key = KEYS[1]
local lim = {maxdata = ARGV[4]}
if ARGV[1] == '1' then overlay(ARGV[2], ARGV[3], {'maxdata'}, lim) end
local maxdata, maxfields, maxmeta = tonumber(lim.maxdata), tonumber(ARGV[5]), tonumber(ARGV[6])
local ifv = tonumber(ARGV[7])
local now = now_ms()
local h, _, e = open_live(key, now)
if not h then return e or false end
if ifv and ifv ~= h.v then return redis.error_reply('CONFLICT ' .. int(h.v)) end
local j = 8
local nmeta = tonumber(ARGV[j]); j = j + 1
local m = meta_decode(h.m)
for _ = 1, nmeta do
  m[ARGV[j]] = ARGV[j + 1]
  j = j + 2
end
local nunset = tonumber(ARGV[j]); j = j + 1
-- the changes: field -> new value, or false to remove (a field both set and
-- unset is set; of two sets the later wins)
local change, order = {}, {}
for _ = 1, nunset do
  if change[ARGV[j]] == nil then order[#order + 1] = ARGV[j] end
  change[ARGV[j]] = false
  j = j + 1
end
while j < #ARGV do
  if change[ARGV[j]] == nil then order[#order + 1] = ARGV[j] end
  change[ARGV[j]] = ARGV[j + 1]
  j = j + 2
end
local dn, db = h.dn, h.db
local old = {}
if #order > 0 then
  local names = {}
  for k = 1, #order do names[k] = 'd:' .. order[k] end
  old = redis.call('HMGET', key, unpack(names))
end
local hset, hdel = {}, {}
for k = 1, #order do
  local f, new, was = order[k], change[order[k]], old[k]
  if was then dn = dn - 1; db = db - #f - #was end
  if new then
    dn = dn + 1; db = db + #f + #new
    hset[#hset + 1] = 'd:' .. f
    hset[#hset + 1] = new
  elseif was then
    hdel[#hdel + 1] = 'd:' .. f
  end
end
local err = check_limits(h.s, m, dn, db, maxdata, maxfields, maxmeta)
if err then return redis.error_reply(err) end
local v = bump(h.v)
hset[#hset + 1] = 'v'; hset[#hset + 1] = int(v)
hset[#hset + 1] = 'dn'; hset[#hset + 1] = int(dn)
hset[#hset + 1] = 'db'; hset[#hset + 1] = int(db)
if nmeta > 0 then
  hset[#hset + 1] = 'm'; hset[#hset + 1] = cmsgpack.pack(meta_flat(m))
end
if #hdel > 0 then redis.call('HDEL', key, unpack(hdel)) end
redis.call('HSET', key, unpack(hset))
return v
