"""The Lua scripts. Each touches only the keys it is given, one slot per call on Redis
Cluster (callers group keys by slot there), and is safe to run twice.
"""

from __future__ import annotations

__all__ = ["SET_IF_GREATER", "PUSH_TO_TIMELINES", "REMOVE_FROM_TIMELINES", "TOGGLE_MEMBER", "RENEW_LEASE"]

#: KEYS: timelines. ARGV: id, min_id (older entries leave), max_length, ttl_ms,
#: dedupe_window (entries from the head to look at; 0 = the whole list), message
#: (published when the entry is really added; '' = none), owner_before, owner_after, then
#: one channel per key ('' = none). When owner_before is not '', the channels are not
#: passed: each key publishes on owner_before .. <the key's hash tag> .. owner_after (its
#: owner's live channel), which spares the caller one argument per key.
#: Returns how many timelines gained the entry.
PUSH_TO_TIMELINES = """
local id, min_id = ARGV[1], tonumber(ARGV[2])
local max_length, ttl_ms, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local message, owner_before, owner_after = ARGV[6], ARGV[7], ARGV[8]
local added = 0
for i, key in ipairs(KEYS) do
  if not redis.call('LPOS', key, id, 'MAXLEN', window) then
    local length = redis.call('LPUSH', key, id)
    -- Drop the tail while it is older than min_id, then cap the length. While the list is
    -- too long its tail goes either way, so it is popped at once (RPOP answers what it
    -- was): on a full list that saves the LINDEX that would only look at it.
    while length > 0 do
      if length > max_length then
        local tail = redis.call('RPOP', key)
        length = length - 1
        if tonumber(tail) >= min_id then break end
      elseif tonumber(redis.call('LINDEX', key, -1)) < min_id then
        redis.call('RPOP', key)
        length = length - 1
      else
        break
      end
    end
    if length > max_length then redis.call('LTRIM', key, 0, max_length - 1) end
    redis.call('PEXPIRE', key, ttl_ms)
    added = added + 1
    if message ~= '' then
      local channel
      if owner_before ~= '' then
        local tag = string.match(key, '{([^}]*)}')
        if tag and tag ~= '' then channel = owner_before .. tag .. owner_after end
      else
        channel = ARGV[8 + i]
      end
      if channel and channel ~= '' then redis.call('PUBLISH', channel, message) end
    end
  end
end
return added
"""

#: KEYS: timelines. ARGV: id, message (published when really removed), owner_before,
#: owner_after, then one channel per key: channels as for PUSH_TO_TIMELINES.
REMOVE_FROM_TIMELINES = """
local message, owner_before, owner_after = ARGV[2], ARGV[3], ARGV[4]
local removed = 0
for i, key in ipairs(KEYS) do
  if redis.call('LREM', key, 0, ARGV[1]) > 0 then
    removed = removed + 1
    if message ~= '' then
      local channel
      if owner_before ~= '' then
        local tag = string.match(key, '{([^}]*)}')
        if tag and tag ~= '' then channel = owner_before .. tag .. owner_after end
      else
        channel = ARGV[4 + i]
      end
      if channel and channel ~= '' then redis.call('PUBLISH', channel, message) end
    end
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

#: KEYS: counter. ARGV: value, ttl seconds. Raises the counter to ``value``, never lowers it.
SET_IF_GREATER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return 1
"""
