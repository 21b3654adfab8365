"""The Lua scripts. Each touches only the keys it is given, one slot per call on Redis
Cluster (callers group keys by slot there), and is safe to run twice.
"""

from __future__ import annotations

__all__ = ["PUSH_TO_TIMELINES", "REMOVE_FROM_TIMELINES", "TOGGLE_MEMBER", "RENEW_LEASE"]

#: KEYS: timelines. ARGV: id, min_id (older entries leave), max_length, ttl_ms,
#: dedupe_window (entries from the head to look at; 0 = the whole list), message
#: (published when the entry is really added; '' = none), then one channel per key
#: ('' = none). Returns how many timelines gained the entry.
PUSH_TO_TIMELINES = """
local id, min_id = ARGV[1], tonumber(ARGV[2])
local max_length, ttl_ms, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local message = ARGV[6]
local added = 0
for i, key in ipairs(KEYS) do
  if not redis.call('LPOS', key, id, 'MAXLEN', window) then
    redis.call('LPUSH', key, id)
    while true do
      local tail = redis.call('LINDEX', key, -1)
      if tail and tonumber(tail) < min_id then redis.call('RPOP', key) else break end
    end
    redis.call('LTRIM', key, 0, max_length - 1)
    redis.call('PEXPIRE', key, ttl_ms)
    added = added + 1
    local channel = ARGV[6 + i]
    if message ~= '' and channel and channel ~= '' then redis.call('PUBLISH', channel, message) end
  end
end
return added
"""

#: KEYS: timelines. ARGV: id, message (published when really removed), then one channel per key.
REMOVE_FROM_TIMELINES = """
local removed = 0
for i, key in ipairs(KEYS) do
  if redis.call('LREM', key, 0, ARGV[1]) > 0 then
    removed = removed + 1
    local channel = ARGV[2 + i]
    if ARGV[2] ~= '' and channel and channel ~= '' then redis.call('PUBLISH', channel, ARGV[2]) end
  end
end
return removed
"""

#: Add or remove a member of a set and keep a counter field of the object's hash in step.
#: KEYS: object hash, member set. ARGV: 'add' | 'remove', member, counter field.
#: Returns -1 when the object does not exist, else 1 when something changed, 0 when not.
TOGGLE_MEMBER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local changed
if ARGV[1] == 'add' then changed = redis.call('SADD', KEYS[2], ARGV[2])
else changed = redis.call('SREM', KEYS[2], ARGV[2]) end
if changed == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], ARGV[1] == 'add' and 1 or -1)
end
return changed
"""

#: KEYS: lease key. ARGV: owner, ttl_ms. Extends the lease when we still hold it.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
