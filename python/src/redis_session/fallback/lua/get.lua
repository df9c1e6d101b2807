-- GET key [TOUCH] [FIELDS ...|NODATA] [VALUES]
-- KEYS[1] session; ARGV: touch (0|1), touch-resolution, view (a=all, n=nodata,
-- f=fields, v=values), field names (f, v).
-- Reply: nil; REVOKED <reason>; for v the values (nil where absent); else
-- {subject, created, version, state, last_access, idle_deadline,
--  absolute_deadline (-1: none), grace_until, meta {n, v, ...}, data {f, v, ...}}
-- (data absent for n).
local key = KEYS[1]
local touch = ARGV[1] == '1'
local resolution = tonumber(ARGV[2])
local view = ARGV[3]
local now = now_ms()
local h, data
if view == 'a' then
  local all = redis.pcall('HGETALL', key)
  if all.err then return all end
  if #all == 0 then return false end
  local named = {}
  data = {}
  for j = 1, #all, 2 do
    local f = all[j]
    if string.byte(f, 1) == 100 and string.byte(f, 2) == 58 then -- 'd:'
      data[#data + 1] = string.sub(f, 3)
      data[#data + 1] = all[j + 1]
    else
      named[f] = all[j + 1]
    end
  end
  h = header(named)
  if not h then return redis.error_reply(WRONGTYPE) end
else
  local e
  h, e = load(key)
  if not h then return e or false end
end
local st = state(h, now)
if st == 'expired' then return false end
if st == 'revoked' then return redis.error_reply('REVOKED ' .. h.rr) end
if touch and not (st == 'active' and now - h.la < resolution) then
  if now > h.la then h.la = now end
  local _, _, gu = deadlines(h)
  redis.call('HSET', key, 'la', int(h.la))
  redis.call('PEXPIREAT', key, int(gu))
  st = 'active'
end
if view == 'f' or view == 'v' then
  local names = {}
  for j = 4, #ARGV do names[#names + 1] = 'd:' .. ARGV[j] end
  local vals = {}
  if #names > 0 then vals = redis.call('HMGET', key, unpack(names)) end
  if view == 'v' then return vals end
  data = {}
  local seen = {}
  for j = 1, #names do
    local v = vals[j]
    if v and not seen[names[j]] then
      seen[names[j]] = true
      data[#data + 1] = ARGV[j + 3]
      data[#data + 1] = v
    end
  end
end
local idl, abs, gu = deadlines(h)
local ad = -1
if h.ad > 0 then ad = h.ad end
local reply = {h.s, h.c, h.v, st, h.la, idl, ad, gu, meta_flat(meta_decode(h.m))}
if view ~= 'n' then reply[10] = data end
return reply
