-- redis-session fallback: the part every script shares (prepended to each).
-- One hash per session; see python/README.md "The fallback's hash layout".
-- Times are ms since the epoch read from the server's clock (TIME): scripts
-- replicate by effects, so replicas and the AOF get the absolute values
-- written here (HSET, PEXPIREAT), never a relative time.
local VERSION_MAX = 9007199254740992
local SUBJECT_MAX = 512
local META_ENTRY_MAX = 1024
local REASON_MAX = 256
local INF = math.huge
local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- an exact decimal (tostring() would round past 14 digits)
local function int(x)
  return string.format('%d', x)
end

local HEADER = {'v', 'c', 'la', 'i', 'ad', 'g', 'ru', 'rr', 's', 'm', 'dn', 'db'}

-- The header of a session from HMGET/HGETALL values (nil: not a session).
local function header(r)
  if not r.v then return nil end
  return {
    v = tonumber(r.v), c = tonumber(r.c), la = tonumber(r.la), i = tonumber(r.i),
    ad = tonumber(r.ad), g = tonumber(r.g), ru = r.ru and tonumber(r.ru) or nil,
    rr = r.rr, s = r.s or '', m = r.m, dn = tonumber(r.dn or '0'), db = tonumber(r.db or '0'),
  }
end

-- HMGET of the header fields: nil when the key is missing; nil and a
-- WRONGTYPE error reply for a key of another type or a hash that is not a
-- session. (Errors are returned, never raised: a raised error would reach
-- the client with the script's name appended.)
local function load(key)
  local r = redis.pcall('HMGET', key, unpack(HEADER))
  if r.err then return nil, r end
  local named = {}
  local any = false
  for j = 1, #HEADER do
    if r[j] then named[HEADER[j]] = r[j]; any = true end
  end
  if not any then
    if redis.call('EXISTS', key) == 1 then return nil, redis.error_reply(WRONGTYPE) end
    return nil
  end
  local h = header(named)
  if not h then return nil, redis.error_reply(WRONGTYPE) end
  return h
end

local function deadlines(h)
  local idl = h.la + h.i
  local abs = INF
  if h.ad > 0 then abs = h.ad end
  local gu = idl + h.g
  if abs < gu then gu = abs end
  return idl, abs, gu
end

local function state(h, now)
  if h.ru then
    if now < h.ru then return 'revoked' end
    return 'expired'
  end
  local idl, abs, gu = deadlines(h)
  if now >= abs then return 'expired' end
  if now < idl then return 'active' end
  if now < gu then return 'grace' end
  return 'expired'
end

local function bump(v)
  if v + 1 > VERSION_MAX then return VERSION_MAX end
  return v + 1
end

-- meta: a MessagePack array name, value, ... sorted by name (absent when empty)
local function meta_decode(blob)
  local m = {}
  if blob and #blob > 0 then
    local a = cmsgpack.unpack(blob)
    for j = 1, #a, 2 do m[a[j]] = a[j + 1] end
  end
  return m
end

local function meta_flat(m)
  local names = {}
  for k in pairs(m) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do
    out[#out + 1] = k
    out[#out + 1] = m[k]
  end
  return out
end

local function meta_count(m)
  local n = 0
  for _ in pairs(m) do n = n + 1 end
  return n
end

-- The module's limits, checked in its order, on the value a write would leave.
local function check_limits(subject, m, dn, db, maxdata, maxfields, maxmeta)
  if #subject > SUBJECT_MAX then
    return 'TOOBIG subject longer than ' .. SUBJECT_MAX .. ' bytes'
  end
  if meta_count(m) > maxmeta then
    return 'TOOBIG more than ' .. maxmeta .. ' meta entries'
  end
  for k, v in pairs(m) do
    if #k > META_ENTRY_MAX or #v > META_ENTRY_MAX then
      return 'TOOBIG meta name or value longer than ' .. META_ENTRY_MAX .. ' bytes'
    end
  end
  if dn > maxfields then
    return 'TOOBIG more than ' .. maxfields .. ' data fields'
  end
  if db > maxdata then
    return 'TOOBIG data is ' .. int(db) .. ' bytes, limit ' .. int(maxdata)
  end
  return nil
end

-- A live session: its header and state; nil when missing or expired; nil,
-- nil and an error reply (REVOKED, WRONGTYPE) to return.
local function open_live(key, now)
  local h, e = load(key)
  if not h then return nil, nil, e end
  local st = state(h, now)
  if st == 'expired' then return nil end
  if st == 'revoked' then return nil, nil, redis.error_reply('REVOKED ' .. h.rr) end
  return h, st
end

local function settings_key(prefix, tenant)
  return prefix .. tenant .. ':@settings'
end

local function index_key(prefix, tenant, subject)
  return prefix .. tenant .. ':@subject:' .. subject
end

-- Tenant settings over the defaults given (single-server mode reads them here).
local function overlay(prefix, tenant, names, values)
  local r = redis.call('HMGET', settings_key(prefix, tenant), unpack(names))
  for j = 1, #names do
    if r[j] then values[names[j]] = r[j] end
  end
  return values
end

-- Turns a live session into a tombstone until min(its end, now + retention).
local function revoke(key, h, now, reason, retention)
  local _, _, gu = deadlines(h)
  local ru = now + retention
  if gu < ru then ru = gu end
  if reason == '' then reason = 'revoked' end
  redis.call('DEL', key)
  redis.call('HSET', key, 'v', int(h.v), 'c', int(h.c), 'la', int(h.la), 'i', int(h.i),
    'ad', int(h.ad), 'g', int(h.g), 's', h.s, 'ru', int(ru), 'rr', reason)
  redis.call('PEXPIREAT', key, int(ru))
end

-- A session key from the index that is live and still of `subject`: its header.
local function live_of(key, subject, now)
  local h = load(key)
  if not h then return nil end
  local st = state(h, now)
  if (st == 'active' or st == 'grace') and h.s == subject then return h end
  return nil
end
