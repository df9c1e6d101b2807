-- RENEW key [IDLE ms]
-- KEYS[1] session; ARGV: touch-resolution, new idle ('' = keep).
-- Reply: ms to the new idle deadline (capped by the absolute one); nil; REVOKED.
local key = KEYS[1]
local resolution = tonumber(ARGV[1])
local new_idle = tonumber(ARGV[2])
local now = now_ms()
local h, st, e = open_live(key, now)
if not h then return e or false end
if new_idle or not (st == 'active' and now - h.la < resolution) then
  if now > h.la then h.la = now end
  if new_idle then
    h.i = new_idle
    h.v = bump(h.v)
    redis.call('HSET', key, 'la', int(h.la), 'i', int(h.i), 'v', int(h.v))
  else
    redis.call('HSET', key, 'la', int(h.la))
  end
  local _, _, gu = deadlines(h)
  redis.call('PEXPIREAT', key, int(gu))
end
local idl, abs = deadlines(h)
local left = idl
if abs < left then left = abs end
left = left - now
if left < 0 then left = 0 end
return left
