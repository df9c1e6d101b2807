-- The per-subject index: a sorted set <prefix><tenant>:@subject:<subject> of
-- session keys scored by created. KEYS[1] the index; ARGV[1] the operation:
--   list <subject>                              live keys, sorted (reads only)
--   revokeall <subject> <except> <reason> <retention>   single server only
--   add <key> <absolute ms (0: none)>           cluster: before the create
--   prune <min age ms> <key>...                 cluster: drop entries older than min age
local idx, op = KEYS[1], ARGV[1]
local now = now_ms()
if op == 'list' then
  local out = {}
  for _, k in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if live_of(k, ARGV[2], now) then out[#out + 1] = k end
  end
  table.sort(out)
  return out
elseif op == 'revokeall' then
  local subject, except, reason, retention = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  if #reason > REASON_MAX or string.find(reason, '[\r\n]') then
    return redis.error_reply('ERR syntax error')
  end
  local n, gone = 0, {}
  for _, k in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local h = live_of(k, subject, now)
    if h and k ~= except then
      revoke(k, h, now, reason, retention)
      n = n + 1
      gone[#gone + 1] = k
    elseif not h then
      gone[#gone + 1] = k
    end
  end
  for s = 1, #gone, 1000 do
    redis.call('ZREM', idx, unpack(gone, s, math.min(s + 999, #gone)))
  end
  return n
elseif op == 'add' then
  local ad = 0
  if tonumber(ARGV[3]) > 0 then ad = now + tonumber(ARGV[3]) end
  local fresh = redis.call('EXISTS', idx) == 0
  redis.call('ZADD', idx, int(now), ARGV[2])
  if ad == 0 then
    redis.call('PERSIST', idx)
  elseif fresh then
    redis.call('PEXPIREAT', idx, int(ad))
  else
    redis.call('PEXPIREAT', idx, int(ad), 'GT')
  end
  return 1
elseif op == 'prune' then
  local oldest = now - tonumber(ARGV[2])
  local n = 0
  for j = 3, #ARGV do
    local score = redis.call('ZSCORE', idx, ARGV[j])
    if score and tonumber(score) < oldest then
      n = n + redis.call('ZREM', idx, ARGV[j])
    end
  end
  return n
end
return redis.error_reply('ERR syntax error')
