-- TTL key. KEYS[1] session. Reply: nil; REVOKED; {state, idle_ms, absolute_ms, grace_ms}.
local now = now_ms()
local h, st, e = open_live(KEYS[1], now)
if not h then return e or false end
local idl, abs, gu = deadlines(h)
local function left(t)
  if t - now < 0 then return 0 end
  return t - now
end
local absolute_ms = -1
if h.ad > 0 then absolute_ms = left(h.ad) end
return {st, left(idl), absolute_ms, left(gu)}
