"""
The Lua scripts of the Redis store, one per operation that must be atomic.

Every script touches only the keys of one stream or of one uid, and those
keys share a hash tag (C{{ch:NAME}}, C{{u:UID}}), so each runs on one Redis
Cluster slot.  Times and payloads travel as the strings Python made: Lua's
numbers print with 14 digits, so a timestamp is never formatted in Lua, only
compared (C{tonumber}) and copied.

A stream is two keys: C{meta}, a hash of C{epoch}, C{top} (the last offset
given), C{ttl} (the latest append's retention) and C{last} (the newest
timestamp given); and C{stream}, a Redis Stream whose entry ids are
C{OFFSET-0} with fields C{p} (payload), C{b} (C{1} for binary) and C{t}
(timestamp).  A meta that is missing - never made, expired, or lost with a
failed-over Redis - gets a new epoch and an emptied stream, so an offset never
silently changes meaning.
"""

#: shared by the scripts that read or write a stream: the stream's meta,
#: made with the given epoch when it is missing
_ENSURE_META = """
local function ensureMeta(meta, stream, epoch)
  local have = redis.call('HMGET', meta, 'epoch', 'top', 'ttl', 'last')
  if not have[1] then
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
    return epoch, 0, nil, nil
  end
  return have[1], tonumber(have[2]), have[3], have[4]
end
"""

#: one append, shared by the script that only appends and the one that also
#: publishes: ARGV[1..7] are newEpoch, payload, binary, now, maxCount, ttl,
#: keepMeta (seconds); answers offset, epoch, timestamp
_APPEND = _ENSURE_META + """
local function append(meta, stream)
  local epoch, top, _, last = ensureMeta(meta, stream, ARGV[1])
  local stamp = ARGV[4]
  if last and tonumber(last) > tonumber(stamp) then stamp = last end
  top = top + 1
  redis.call('HSET', meta, 'top', top, 'ttl', ARGV[6], 'last', stamp)
  redis.call('XADD', stream, 'MAXLEN', ARGV[5], top .. '-0', 'p', ARGV[2], 'b', ARGV[3], 't', stamp)
  redis.call('EXPIRE', meta, ARGV[7])
  redis.call('EXPIRE', stream, ARGV[7])
  return top, epoch, stamp
end
"""

#: KEYS: meta, stream.  ARGV: as L{_APPEND}.  Answers {offset, epoch,
#: timestamp}.
APPEND = _APPEND + """
return {append(KEYS[1], KEYS[2])}
"""

#: KEYS: meta, stream, the Redis channel to publish on, the channel's
#: members hash.  ARGV: as L{_APPEND}, then the publish command (C{PUBLISH}
#: or C{SPUBLISH}: the broker's choice), and the message header's text
#: before and after "OFFSET EPOCH" (L{realtime.broker.redismessages.wrapHeader}:
#: the format stays in Python).  Appends, then publishes the header and the
#: payload, in one step: messages reach the pub/sub wire in offset order
#: whichever node published them.  Answers {offset, epoch, timestamp, nodes
#: that received it, members}.
APPEND_PUBLISH = _APPEND + """
local top, epoch, stamp = append(KEYS[1], KEYS[2])
local receivers = redis.call(ARGV[8], KEYS[3], ARGV[9] .. top .. ' ' .. epoch .. ARGV[10] .. ARGV[2])
return {top, epoch, stamp, receivers, redis.call('HLEN', KEYS[4])}
"""

#: the first kept offset whose message has not expired at ARGV now, scanning
#: the expired prefix in small steps (timestamps never decrease in a stream,
#: so expired messages are always the oldest)
_FIRST_LIVE = """
local function firstLive(stream, ttl, now, top)
  local start = '-'
  while true do
    local batch = redis.call('XRANGE', stream, start, '+', 'COUNT', 64)
    if #batch == 0 then return top + 1 end
    for _, entry in ipairs(batch) do
      local fields = entry[2]
      local t
      for i = 1, #fields, 2 do
        if fields[i] == 't' then t = tonumber(fields[i + 1]) end
      end
      if ttl == nil or t + tonumber(ttl) > now then
        return tonumber(string.match(entry[1], '^(%d+)'))
      end
      start = '(' .. entry[1]
    end
  end
end
"""

#: KEYS: meta, stream.  ARGV: newEpoch, now, sinceEpoch or '', sinceOffset
#: or ''.  Answers {epoch, top, firstLive, entries}; entries after the
#: position asked for, expired ones left out.
HISTORY = _ENSURE_META + _FIRST_LIVE + """
local epoch, top, ttl = ensureMeta(KEYS[1], KEYS[2], ARGV[1])
if ARGV[3] == '' then return {epoch, top, 0, {}} end
local first = firstLive(KEYS[2], ttl, tonumber(ARGV[2]), top)
local start
if ARGV[3] ~= epoch then
  start = first - 1
else
  start = math.min(math.max(tonumber(ARGV[4]), first - 1), top)
end
local entries = {}
if start < top then
  entries = redis.call('XRANGE', KEYS[2], (start + 1) .. '-0', '+')
end
return {epoch, top, first, entries}
"""

#: KEYS: meta, stream.  ARGV: now.  Deletes the expired prefix and answers
#: how many messages went.
PRUNE_STREAM = _FIRST_LIVE + """
local have = redis.call('HMGET', KEYS[1], 'top', 'ttl')
if not have[1] or not have[2] then return 0 end
local first = firstLive(KEYS[2], have[2], tonumber(ARGV[1]), tonumber(have[1]))
local before = redis.call('XLEN', KEYS[2])
redis.call('XTRIM', KEYS[2], 'MINID', first .. '-0')
return before - redis.call('XLEN', KEYS[2])
"""

#: an offline entry is "OFFSET:EXPIRES:TIMESTAMP:BINARY:" then the payload;
#: the numbers are Python's strings and never contain a colon
_EXPIRES = """
local function expires(entry)
  return tonumber(string.match(entry, '^[^:]*:([^:]*):'))
end
"""

#: KEYS: queue, sequence hash.  ARGV: now, maxCount, expires, timestamp,
#: binary, payload.  Answers 1 when queued, 0 when the queue is full.
QUEUE_OFFLINE = _EXPIRES + """
local now = tonumber(ARGV[1])
local live = 0
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if expires(entry) > now then live = live + 1 end
end
if live >= tonumber(ARGV[2]) then return 0 end
local offset = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('RPUSH', KEYS[1], offset .. ':' .. ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[5] .. ':' .. ARGV[6])
local ttl = math.ceil(tonumber(ARGV[3]) - now)
if ttl < 1 then ttl = 1 end
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

#: KEYS: queue.  Answers the whole queue and removes it.
TAKE_OFFLINE = """
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return entries
"""

#: KEYS: queue.  ARGV: now.  Removes the expired entries, answers how many.
PRUNE_QUEUE = _EXPIRES + """
local now = tonumber(ARGV[1])
local kept, dropped = {}, 0
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if expires(entry) > now then table.insert(kept, entry) else dropped = dropped + 1 end
end
if dropped > 0 then
  local ttl = redis.call('TTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  if #kept > 0 then
    redis.call('RPUSH', KEYS[1], unpack(kept))
    if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
  end
end
return dropped
"""
