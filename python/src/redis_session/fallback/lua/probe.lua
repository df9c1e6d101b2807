-- What the index needs to know of a session: {state, created, subject}, or
-- nil when missing or expired. KEYS[1] session. Changes nothing.
local h = load(KEYS[1])
if not h then return false end
local st = state(h, now_ms())
if st == 'expired' then return false end
return {st, h.c, h.s}
