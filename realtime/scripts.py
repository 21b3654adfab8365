"""The Lua scripts. Each touches only the keys it is given, one slot per call on Redis
Cluster (callers group keys by slot there), and is safe to run twice.
"""

from __future__ import annotations

__all__ = ["SET_IF_GREATER", "PUSH_TO_TIMELINES", "REMOVE_FROM_TIMELINES", "TOGGLE_MEMBER", "RENEW_LEASE"]

# Live events leave a push or a removal as one PUBLISH per server process that holds a
# socket of a recipient, naming those recipients: ``"ann bob\n<event>"`` on the process's
# channel. Only home timelines go out live. Where a user's sockets are is the sorted set
# presence_before .. user .. presence_after (process -> lease end, ms), in the same slot as
# the user's timeline key, so it is read in the same atomic step as the write: a socket
# registered before the write hears it, one registered after reads it from the timeline.
# (That key is derived, not passed in KEYS, to spare one argument per follower; being in
# the declared key's slot, it is safe on Redis Cluster.)
_LIVE_EVENTS = """
local home_prefix, presence_before, presence_after, channel_prefix = ARGV[{first}], ARGV[{first} + 1],
  ARGV[{first} + 2], ARGV[{first} + 3]
local now_ms = ARGV[{first} + 4]
local recipients, processes = {{}}, {{}}
local function note_recipient(key)
  if message == '' or string.sub(key, 1, #home_prefix) ~= home_prefix then return end
  local owner = string.sub(key, #home_prefix + 1, -2)
  for _, process in ipairs(redis.call('ZRANGEBYSCORE', presence_before .. owner .. presence_after, now_ms, '+inf')) do
    local names = recipients[process]
    if not names then
      names = {{}}
      recipients[process] = names
      processes[#processes + 1] = process
    end
    names[#names + 1] = owner
  end
end
local function publish_to_recipients()
  for _, process in ipairs(processes) do
    redis.call('PUBLISH', channel_prefix .. process, table.concat(recipients[process], ' ') .. '\\n' .. message)
  end
end
"""

#: KEYS: timelines. ARGV: id, min_id (older entries leave), max_length, ttl_ms,
#: dedupe_window (entries from the head to look at; 0 = the whole list), message (sent
#: live for each home timeline that really gains the entry; '' = none), then the live
#: event arguments (see _LIVE_EVENTS). Returns how many timelines gained the entry.
PUSH_TO_TIMELINES = """
local id, min_id = ARGV[1], tonumber(ARGV[2])
local max_length, ttl_ms, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local message = ARGV[6]
""" + _LIVE_EVENTS.format(first=7) + """
local added = 0
for _, key in ipairs(KEYS) do
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
    note_recipient(key)
  end
end
publish_to_recipients()
return added
"""

#: KEYS: timelines. ARGV: id, message (sent live for each home timeline it really left),
#: then the live event arguments (see _LIVE_EVENTS). Returns how many lists lost it.
REMOVE_FROM_TIMELINES = """
local message = ARGV[2]
""" + _LIVE_EVENTS.format(first=3) + """
local removed = 0
for _, key in ipairs(KEYS) do
  if redis.call('LREM', key, 0, ARGV[1]) > 0 then
    removed = removed + 1
    note_recipient(key)
  end
end
publish_to_recipients()
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
