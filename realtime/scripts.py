"""The Lua scripts. Each touches only the keys it is given, one slot per call on Redis
Cluster (callers group keys by slot there), and is safe to run twice.
"""

from __future__ import annotations

from .live_protocol import HOT_MARK, LUA_ADDRESSED

__all__ = ["PUSH_TO_TIMELINES", "REMOVE_FROM_TIMELINES", "PUSH_ON_NODE", "REMOVE_ON_NODE", "TOGGLE_MEMBER", "RENEW_LEASE", "ENQUEUE_JOB", "FINISH_JOB", "CONFIRM_JOB",
           "CREATE_TWEET", "COUNT_TWEET", "MARK_COUNTED", "DELETE_TWEET", "CLAIM_RETWEET", "RELEASE_RETWEET",
           "ADD_NOTIFICATION", "FORGET_NOTIFICATIONS", "MARK_NOTIFICATIONS_READ", "COUNT_UNREAD", "COUNTS_CHANGED",
           "VIEWER_FLAGS", "SET_HOT_FOLLOW"]

# Live events leave a push or a removal as one PUBLISH per server process that holds a
# socket of a recipient, naming those recipients (``addressed``, realtime.live_protocol) on
# the process's channel. Only home timelines go out live. Where a user's sockets are is the
# sorted set presence_before .. user .. presence_after (process -> lease end, ms), in the same slot as
# the user's timeline key, so it is read in the same atomic step as the write: a socket
# registered before the write hears it, one registered after reads it from the timeline.
# (That key is derived, not passed in KEYS, to spare one argument per follower; being in
# the declared key's slot, it is safe on Redis Cluster.)
# On Redis Cluster (channel_mid not empty) a script may only SPUBLISH to a channel of its
# own slot, so each recipient's event goes to the sharded channel
# channel_prefix .. user .. channel_mid .. process, naming that user alone.
# On one Redis (online_key not empty) the sorted set online_key (user -> their latest lease
# end, written with each lease) says in one ZMSCORE for a whole batch who may be online:
# only they pay the read of their own leases (find_online; most followers are offline).
# A hot account's hot timeline (hot_prefix .. shard .. '}:' .. account, realtime.hot_fanout)
# sends its gains and losses to every process, on its shard's channel (hot_channel_prefix ..
# shard .. '}', the key's slot), naming '*' .. account and then the users to skip (hot_skip,
# each name after a space: they have it from their own timelines).
_LIVE_EVENTS = LUA_ADDRESSED + """
local home_prefix, presence_before, presence_after, channel_prefix = ARGV[{first}], ARGV[{first} + 1],
  ARGV[{first} + 2], ARGV[{first} + 3]
local now_ms, channel_mid, online_key = ARGV[{first} + 4], ARGV[{first} + 5], ARGV[{first} + 6]
local hot_prefix, hot_channel_prefix, hot_skip = ARGV[{first} + 7], ARGV[{first} + 8], ARGV[{first} + 9]
local recipients, processes = {{}}, {{}}
local online = nil  -- owner -> true for those who may be online, once find_online has looked
local function home_owner(key)  -- the owner of a home timeline key, else nil
  if string.sub(key, 1, #home_prefix) == home_prefix then return string.sub(key, #home_prefix + 1, -2) end
end
local function find_online(targets)
  if message == '' or online_key == '' then return end
  local owners = {{}}
  for _, key in ipairs(targets) do
    owners[#owners + 1] = home_owner(key)
  end
  online = {{}}
  if #owners == 0 then return end
  local now = tonumber(now_ms)
  for i, score in ipairs(redis.call('ZMSCORE', online_key, unpack(owners))) do
    if score and tonumber(score) >= now then online[owners[i]] = true end
  end
end
local function publish_hot(key)
  if hot_prefix == '' or string.sub(key, 1, #hot_prefix) ~= hot_prefix then return end
  local rest = string.sub(key, #hot_prefix + 1)
  local close = string.find(rest, '}}', 1, true)
  local channel = hot_channel_prefix .. string.sub(rest, 1, close)
  local event = addressed('""" + HOT_MARK + """' .. string.sub(rest, close + 2) .. hot_skip, message)
  if channel_mid ~= '' then redis.call('SPUBLISH', channel, event) else redis.call('PUBLISH', channel, event) end
end
local function note_recipient(key)
  local owner = message ~= '' and home_owner(key)
  if not owner and message ~= '' then publish_hot(key) end
  if not owner or (online and not online[owner]) then return end
  for _, process in ipairs(redis.call('ZRANGEBYSCORE', presence_before .. owner .. presence_after, now_ms, '+inf')) do
    if channel_mid ~= '' then
      redis.call('SPUBLISH', channel_prefix .. owner .. channel_mid .. process, addressed(owner, message))
    else
      local names = recipients[process]
      if not names then
        names = {{}}
        recipients[process] = names
        processes[#processes + 1] = process
      end
      names[#names + 1] = owner
    end
  end
end
local function publish_to_recipients()
  for _, process in ipairs(processes) do
    redis.call('PUBLISH', channel_prefix .. process, addressed(table.concat(recipients[process], ' '), message))
  end
end
"""

#: A list is trimmed (to its length, then of entries past the age limit, from the tail) each
#: time its length reaches a multiple of this: a full list grows this far past its length
#: before one LTRIM takes it back, rather than paying an RPOP on every push. Reads answer the
#: first ``max_length`` entries, and filter by age, whatever a list holds between two trims.
TRIM_EVERY = 32

#: KEYS: timelines. ARGV: id, min_id (older entries leave), max_length, ttl_ms,
#: dedupe_window (entries from the head to look at; 0 = the whole list; -1 = none: a job's
#: first run, which holds the job, see realtime.fanout), message (sent
#: live for each home timeline that really gains the entry; '' = none), refresh ('1': a
#: list that gains the entry lives ttl_ms more; '0': only a list the push creates gets its
#: TTL, the caller knows the others' is long enough: realtime.timelines.FollowerExpiries),
#: then the live event arguments (see _LIVE_EVENTS). Returns how many timelines gained it.
PUSH_TO_TIMELINES = """
local id, min_id = ARGV[1], tonumber(ARGV[2])
local max_length, ttl_ms, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local message, refresh = ARGV[6], ARGV[7] == '1'
""" + _LIVE_EVENTS.format(first=8) + """
find_online(TARGETS)
local added = 0
for _, key in ipairs(TARGETS) do
  if window < 0 or not redis.call('LPOS', key, id, 'MAXLEN', window) then
    local length = redis.call('LPUSH', key, id)
    if length % """ + str(TRIM_EVERY) + """ == 0 then
      if length > max_length then
        redis.call('LTRIM', key, 0, max_length - 1)
        length = max_length
      end
      while length > 0 and tonumber(redis.call('LINDEX', key, -1)) < min_id do
        redis.call('RPOP', key)
        length = length - 1
      end
    end
    if refresh or length == 1 then redis.call('PEXPIRE', key, ttl_ms) end
    added = added + 1
    note_recipient(key)
  end
end
publish_to_recipients()
return added
"""

#: KEYS: timelines. ARGV: id, message (sent live for each home timeline it really left),
#: deletes prefix, deletes length, ttl_ms, now (ms), hot deletes prefix, then the live event
#: arguments (see _LIVE_EVENTS).
#: A home timeline that really loses the entry records it in its owner's list of deletes
#: (deletes prefix .. user .. '}', the home key's slot), as ``id:head:ms``: the entry that
#: was newest after it left, and when. A socket that reconnects with ``since`` is sent the
#: deletes recorded after ``since`` arrived (realtime.timelines.Timelines.changes_after).
#: A hot timeline's go to its own list the same way (a hot account's deletes, which its
#: followers' home timelines never held: realtime.hot_fanout). Returns how many lists lost it.
REMOVE_FROM_TIMELINES = """
local id, message = ARGV[1], ARGV[2]
local deletes_prefix, deletes_length, ttl_ms, deleted_at = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local hot_deletes_prefix = ARGV[7]
""" + _LIVE_EVENTS.format(first=8) + """
local function deletes_of(key)
  local owner = home_owner(key)
  if owner then return deletes_prefix .. owner .. '}' end
  if hot_prefix ~= '' and string.sub(key, 1, #hot_prefix) == hot_prefix then
    return hot_deletes_prefix .. string.sub(key, #hot_prefix + 1)
  end
end
find_online(TARGETS)
local removed = 0
for _, key in ipairs(TARGETS) do
  if redis.call('LREM', key, 0, id) > 0 then
    removed = removed + 1
    local deletes = deletes_of(key)
    if deletes then
      redis.call('LPUSH', deletes, id .. ':' .. (redis.call('LINDEX', key, 0) or '0') .. ':' .. deleted_at)
      redis.call('LTRIM', deletes, 0, deletes_length - 1)
      redis.call('PEXPIRE', deletes, ttl_ms)
    end
    note_recipient(key)
  end
end
publish_to_recipients()
return removed
"""

# The timeline scripts loop over TARGETS: their KEYS, or on Redis Cluster, in the form a
# worker sends to one node for a whole batch, the keys of many slots of that node (Redis 7
# runs a script over keys of several slots when it says so in its flags, as long as the node
# serves them all: one call per node and batch instead of one per follower). Those keys come
# after the script's own arguments, their count last; the call declares no key.
_TARGETS_ARE_KEYS = "local TARGETS = KEYS\n"
_TARGETS_IN_ARGV = """#!lua flags=allow-cross-slot-keys
local TARGETS, target_count = {}, tonumber(ARGV[#ARGV])
for i = #ARGV - target_count, #ARGV - 1 do TARGETS[#TARGETS + 1] = ARGV[i] end
"""
PUSH_TO_TIMELINES, REMOVE_FROM_TIMELINES = _TARGETS_ARE_KEYS + PUSH_TO_TIMELINES, _TARGETS_ARE_KEYS + REMOVE_FROM_TIMELINES
#: PUSH_TO_TIMELINES and REMOVE_FROM_TIMELINES over the keys of many slots of one cluster node.
PUSH_ON_NODE = PUSH_TO_TIMELINES.replace(_TARGETS_ARE_KEYS, _TARGETS_IN_ARGV, 1)
REMOVE_ON_NODE = REMOVE_FROM_TIMELINES.replace(_TARGETS_ARE_KEYS, _TARGETS_IN_ARGV, 1)

# A tweet that was deleted keeps a tombstone, ``{deleted = 1}``, for a while, so that a
# fan-out job re-run after the delete cannot bring it back (realtime.tweets).
_LIVE_TWEET = """
local function live_tweet(key)
  return redis.call('EXISTS', key) == 1 and redis.call('HEXISTS', key, 'deleted') == 0
end
"""

#: Add or remove a member of a set and keep a counter field of the object's hash in step.
#: KEYS: object hash, member set. ARGV: 'add' | 'remove', member, counter field.
#: Returns -1 when the object does not exist (or was deleted), else 1 when something changed, 0 when not.
TOGGLE_MEMBER = _LIVE_TWEET + """
if not live_tweet(KEYS[1]) then return -1 end
local changed
if ARGV[1] == 'add' then changed = redis.call('SADD', KEYS[2], ARGV[2])
else changed = redis.call('SREM', KEYS[2], ARGV[2]) end
if changed == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], ARGV[1] == 'add' and 1 or -1)
end
return changed
"""

#: The one atomic step of a post, a retweet or a delete: record its fan-out job, once.
#: KEYS: the shard's stream, the shard's last-job hash, the job's record mark (keys.fanout_recorded).
#: ARGV: author, the mark's ttl (ms), then field, value pairs. The job names the author's
#: previous job not yet done (``after``), which must finish first. Returns the job's stream id:
#: the one recorded first when the mark says this job was recorded already (the call sent again).
ENQUEUE_JOB = """
local recorded = redis.call('GET', KEYS[3])
if recorded then return recorded end
local previous = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local id = redis.call('XADD', KEYS[1], '*', 'after', previous, unpack(ARGV, 3))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('SET', KEYS[3], id, 'PX', ARGV[2])
return id
"""

#: A job is done (or dead-lettered): acknowledge and delete it, drop its progress, and stop
#: naming it as its author's last job. KEYS: stream, last-job hash, progress hash, dead
#: letters. ARGV: group, job id, author, error ('' when done; else the job is copied to the
#: dead letters with it), dead-letter cap.
FINISH_JOB = """
if ARGV[4] ~= '' then
  local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])[1]
  if entry then
    local fields = entry[2]
    fields[#fields + 1] = 'job'
    fields[#fields + 1] = ARGV[2]
    fields[#fields + 1] = 'error'
    fields[#fields + 1] = ARGV[4]
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[3])
if redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[3]) end
return 1
"""

#: A worker still holds a job: it is pending with this consumer. Then its idle time is reset
#: (nobody takes over a job whose worker is alive) and, when given, its progress is written,
#: in the same step. KEYS: stream, progress hash. ARGV: group, job id, consumer, progress ttl
#: (s), then progress field, value pairs. Returns 1 when the job is still this consumer's.
CONFIRM_JOB = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
if #ARGV > 4 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""

#: Store a tweet (or retweet entry) from its job, unless it exists or was deleted.
#: KEYS: tweet hash. ARGV: field, value pairs. Returns 1 when this call created it, 0 when
#: it exists and its counts were added (its ``counted`` field), 2 when it exists and they
#: may not have been (the call that created it died first), -1 when it was deleted (a tombstone).
CREATE_TWEET = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HEXISTS', KEYS[1], 'deleted') == 1 then return -1 end
  if redis.call('HEXISTS', KEYS[1], 'counted') == 1 then return 0 end
  return 2
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

#: Add ``increment`` to a user's tweet count once per member (``+<id>`` a post, ``-<id>`` its
#: delete), however often a job re-runs. KEYS: user hash, the user's counted set. ARGV:
#: member, its score (the tweet id), increment, members kept, ttl_ms. Returns 1 when counted.
COUNT_TWEET = """
if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HINCRBY', KEYS[1], 'tweets', ARGV[3])
return 1
"""

#: The tweet's counts were added (see CREATE_TWEET). KEYS: tweet hash. Never creates it.
MARK_COUNTED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'counted', 1) end
return 1
"""

#: A tweet's counts changed: when processes watch it, bump the counts' version and answer the
#: counts, the version and those processes, read in one atomic step (realtime.watches).
#: KEYS: tweet hash, its watchers. ARGV: now (ms). Returns likes, retweets, version, processes...
COUNTS_CHANGED = _LIVE_TWEET + """
if not live_tweet(KEYS[1]) then return {0, 0, 0} end
local processes = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
if #processes == 0 then return {0, 0, 0} end
local version = redis.call('HINCRBY', KEYS[1], 'counts_version', 1)
local counts = redis.call('HMGET', KEYS[1], 'likes', 'retweets')
local answer = {tonumber(counts[1]) or 0, tonumber(counts[2]) or 0, version}
for _, process in ipairs(processes) do answer[#answer + 1] = process end
return answer
"""

#: Whether a viewer liked and retweeted each of n tweets, in one call where they share a node
#: (one Redis; on a cluster, one call per tweet: its two keys share its slot). KEYS: the
#: tweets' likes sets, then their retweets hashes. ARGV: viewer. Returns liked, retweeted per tweet.
VIEWER_FLAGS = """
local n, viewer, answer = #KEYS / 2, ARGV[1], {}
for i = 1, n do
  answer[#answer + 1] = redis.call('SISMEMBER', KEYS[i], viewer)
  answer[#answer + 1] = redis.call('HEXISTS', KEYS[n + i], viewer)
end
return answer
"""

#: Delete a tweet: its likes go, its hash becomes a tombstone; the retweeters' hash stays
#: (with the same lifetime) for the delete job to remove their retweets. KEYS: tweet hash,
#: likes, retweets. ARGV: tombstone lifetime (ms). Returns 1 when this call deleted it.
DELETE_TWEET = _LIVE_TWEET + """
if not live_tweet(KEYS[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'deleted', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
return 1
"""

#: Count ``retweet_id`` as ``user``'s retweet of the original, once. KEYS: original's hash,
#: its retweets hash. ARGV: user, retweet id. Returns -1: the original is gone; 1: counted
#: now; 0: this retweet was counted before (a re-run); 2: the user retweeted it before.
CLAIM_RETWEET = _LIVE_TWEET + """
if not live_tweet(KEYS[1]) then return -1 end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current == ARGV[2] then return 0 end
if current then return 2 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'retweets', 1)
return 1
"""

#: Undo a user's retweet ``retweet_id`` of the original, once. KEYS: original's hash, its
#: retweets hash. ARGV: user, retweet id. Returns 1 when this call undid it.
RELEASE_RETWEET = _LIVE_TWEET + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if live_tweet(KEYS[1]) then redis.call('HINCRBY', KEYS[1], 'retweets', -1) end
return 1
"""

#: Add a notification unless the user has this one (``type|from|tweet``) already, and send
#: it live to their sockets. Its id is ARGV's, or one more than the newest one's when that
#: is not smaller: ids grow with every notification added, so that "every notification after
#: N" finds each one added after N was (realtime.replay). KEYS: the user's notifications.
#: ARGV: owner (lowercase), member, id, min_id (older ones leave), max_length, ttl_ms, the
#: live frame before and after its id, then the live event arguments (see _LIVE_EVENTS).
#: Returns the id, or 0 when the user had it.
ADD_NOTIFICATION = """
local owner, member, id = ARGV[1], ARGV[2], tonumber(ARGV[3])
local min_id, max_length, ttl_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local message = ''
""" + _LIVE_EVENTS.format(first=9) + """
if redis.call('ZSCORE', KEYS[1], member) then return 0 end
local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
if newest and tonumber(newest) >= id then id = tonumber(newest) + 1 end
redis.call('ZADD', KEYS[1], id, member)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. min_id)
local extra = redis.call('ZCARD', KEYS[1]) - max_length
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[1], ttl_ms)
message = ARGV[7] .. string.format('%.0f', id) .. ARGV[8]
note_recipient(home_prefix .. owner .. '}')
publish_to_recipients()
return id
"""

#: Remove a deleted tweet's notifications from one user's. KEYS: the user's notifications.
#: ARGV: ``|<tweet id>``, the end of their members. Returns how many left.
FORGET_NOTIFICATIONS = """
local suffix, removed = ARGV[1], 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, -#suffix) == suffix then removed = removed + redis.call('ZREM', KEYS[1], member) end
end
return removed
"""

#: The user has read up to a notification id: the mark only moves forward (a stale tab
#: cannot make read ones unread again). KEYS: read mark. ARGV: id, ttl_ms.
MARK_NOTIFICATIONS_READ = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

#: How many notifications are newer than the read mark and ``min_id``. KEYS: notifications,
#: read mark. ARGV: min_id.
COUNT_UNREAD = """
local after = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[1]) - 1)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', after), '+inf')
"""

#: A user follows a hot account from an entry id on (ARGV from_id), or stops ('' ): the
#: change goes live to the user's sockets, whose process then merges (or stops merging) that
#: account's tweets into what it delivers (realtime.hot_fanout). A smaller from_id than one
#: held wins: an earlier follow's entries stay in the home timeline. KEYS: the user's hot
#: follows. ARGV: owner (lowercase), account, from_id, the live frame, then the live event
#: arguments (see _LIVE_EVENTS). Returns 1 when the set changed.
SET_HOT_FOLLOW = """
local owner, account, from_id = ARGV[1], ARGV[2], ARGV[3]
local message = ARGV[4]
""" + _LIVE_EVENTS.format(first=5) + """
local changed
if from_id == '' then changed = redis.call('ZREM', KEYS[1], account)
else changed = redis.call('ZADD', KEYS[1], 'LT', 'CH', from_id, account) end
if changed == 1 then
  note_recipient(home_prefix .. owner .. '}')
  publish_to_recipients()
end
return changed
"""

#: KEYS: lease key. ARGV: owner, ttl_ms. Extends the lease when we still hold it.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
