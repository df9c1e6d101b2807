#!lua flags=no-writes
-- redis-session metrics for Debian's prometheus-redis-exporter (1.45+):
--
--   prometheus-redis-exporter -redis.addr redis://127.0.0.1:6379 \
--       -script /path/to/ops/redis-session-exporter.lua
--
-- The exporter runs this script with EVAL on every scrape and publishes each
-- name/value pair it returns as redis_script_values{key="<name>"}. The names
-- are stable (docs/operations.md lists them; ops/prometheus/prometheus.yml
-- turns them into redis_session_* metrics with a tenant label):
--
--   session_<counter>                  SESSION.STATS, this server in all
--   session_tenant_<counter>:<tenant>  SESSION.STATS <tenant>, every tenant
--   session_tenants                    tenants with settings (INFO session)
--   session_sealed_values:<key id>     data values per sealing key (INFO session)
--
-- <counter> is each field SESSION.STATS answers: sessions, created, hits,
-- misses, touches, touches_propagated, renewals, grace_renewals,
-- cas_conflicts, revocations, expired, evicted, data_bytes.
--
-- Tenants are found in two places, because a tenant without settings may
-- still have sessions: the session_tenant_<name> lines of INFO session
-- (every tenant with live sessions, counters or settings) and
-- SESSION.TENANT LIST (tenants with settings; all an older module build
-- offers). Every value goes out as a string: the exporter parses strings.
--
-- The script writes nothing (flags=no-writes), so it runs on replicas and
-- under maxmemory. The exporter's user needs +eval +info +session.stats
-- +session.tenant|list and read access to the session keys (~sess:*), see
-- docs/operations.md.

local out = {}
local function emit(name, value)
  out[#out + 1] = name
  out[#out + 1] = tostring(value)
end

-- A map reply is a flat name, value, ... array under RESP2 (EVAL's default).
local function each_pair(reply, f)
  for i = 1, #reply - 1, 2 do
    f(reply[i], reply[i + 1])
  end
end

each_pair(redis.call('SESSION.STATS'), function(k, v)
  emit('session_' .. k, v)
end)

local tenants, seen = {}, {}
local function add_tenant(t)
  if not seen[t] then
    seen[t] = true
    tenants[#tenants + 1] = t
  end
end

local info = redis.call('INFO', 'session')
for line in string.gmatch(info, '[^\r\n]+') do
  local name, value = string.match(line, '^session_([%w_%-]+):(.*)$')
  if name then
    local tenant = string.match(name, '^tenant_([%w_%-]+)$')
    local key_id = string.match(name, '^sealed_values_([%w_%-]+)$')
    if tenant and string.find(value, '=', 1, true) then
      add_tenant(tenant)
    elseif key_id then
      emit('session_sealed_values:' .. key_id, value)
    elseif name == 'tenants' then
      emit('session_tenants', value)
    end
  end
end

for _, t in ipairs(redis.call('SESSION.TENANT', 'LIST')) do
  add_tenant(t)
end

table.sort(tenants)
for _, t in ipairs(tenants) do
  each_pair(redis.call('SESSION.STATS', t), function(k, v)
    emit('session_tenant_' .. k .. ':' .. t, v)
  end)
end

return out
