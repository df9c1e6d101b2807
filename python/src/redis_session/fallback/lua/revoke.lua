-- REVOKE key [REASON text]: a tombstone answering REVOKED <reason> until the
-- session's own end, at most revoked-retention ms from now.
-- KEYS[1] session; ARGV: single (1: take it out of its subject's index here),
-- prefix, tenant, revoked-retention, reason ('' = revoked), subject the
-- caller expects ('' = any; for the best-effort index on a cluster).
-- Reply: 1, or 0 when missing, already revoked or of another subject.
local key = KEYS[1]
local reason = ARGV[5]
if #reason > REASON_MAX then
  return redis.error_reply('TOOBIG reason longer than ' .. REASON_MAX .. ' bytes')
end
if string.find(reason, '[\r\n]') then return redis.error_reply('ERR syntax error') end
local now = now_ms()
local h, e = load(key)
if not h then return e or 0 end
local st = state(h, now)
if st ~= 'active' and st ~= 'grace' then return 0 end
if ARGV[6] ~= '' and h.s ~= ARGV[6] then return 0 end
revoke(key, h, now, reason, tonumber(ARGV[4]))
if ARGV[1] == '1' and h.s ~= '' then
  redis.call('ZREM', index_key(ARGV[2], ARGV[3], h.s), key)
end
return 1
