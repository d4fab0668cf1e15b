# -*- test-case-name: tests.test_cluster -*-
"""
The cluster's Lua scripts: each runs atomically in Redis.

Every change that must not interleave with another node's (numbering a
message, claiming a nick, burying a dead node) is one script.
"""

#: Number, keep and publish the room messages a node gathered in one turn
#: of its reactor (one or more, in one or more rooms), in order.  A message
#: whose client tag was seen already (a client's retry reaching another
#: node) is not said again: its answer is the first one's id.  A room Redis
#: does not have, or has from before it restarted (its C{run} is another),
#: is never made here: that message's answer is {2} and the node records
#: the room again (see C{ROOM}) before it tries once more, so that no id is
#: handed out twice.  Each room's new messages go out in one bus message on
#: the room's channel: C{{"t":"said","room":NAME,"e":EPOCH,"b":[[ID,
#: MESSAGE], ...]}}.
#: KEYS: for each message: room hash, stream, tags hash, tags queue.
#: ARGV: messages kept, Redis's run; then for each message: the room's
#: channel, tag ("" for none), room name, message JSON (without id and
#: epoch).
#: Answers three values per message: outcome (1 said, 0 said before, 2 room
#: unknown), id, epoch.
SAY = """
local keep, run = ARGV[1], ARGV[2]
local out, order, batches = {}, {}, {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = i * 4, 2 + i * 4
  local base = KEYS[k + 1]
  local tag = ARGV[a + 2]
  local room = redis.call('HMGET', base, 'epoch', 'run')
  local epoch = room[1]
  local prior = false
  if epoch and room[2] == run and tag ~= '' then
    prior = redis.call('HGET', KEYS[k + 3], tag)
  end
  if not epoch or room[2] ~= run then
    out[#out + 1] = 2; out[#out + 1] = 0; out[#out + 1] = 0
  elseif prior then
    out[#out + 1] = 0; out[#out + 1] = tonumber(prior); out[#out + 1] = epoch
  else
    local message = ARGV[a + 4]
    local id = redis.call('HINCRBY', base, 'last_id', 1)
    redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', keep, id .. '-1', 'e', epoch,
      'm', message)
    if tag ~= '' then
      redis.call('HSET', KEYS[k + 3], tag, id)
      redis.call('RPUSH', KEYS[k + 4], tag)
      if redis.call('LLEN', KEYS[k + 4]) > tonumber(keep) then
        redis.call('HDEL', KEYS[k + 3], redis.call('LPOP', KEYS[k + 4]))
      end
    end
    local batch = batches[base]
    if not batch then
      batch = {'{"t":"said","room":' .. cjson.encode(ARGV[a + 3]) .. ',"e":' ..
        epoch .. ',"b":[', channel = ARGV[a + 1]}
      batches[base] = batch
      order[#order + 1] = base
    else
      batch[#batch + 1] = ','
    end
    batch[#batch + 1] = '[' .. id .. ',' .. message .. ']'
    out[#out + 1] = 1; out[#out + 1] = id; out[#out + 1] = epoch
  end
end
for _, base in ipairs(order) do
  local batch = batches[base]
  batch[#batch + 1] = ']}'
  redis.call('PUBLISH', batch.channel, table.concat(batch))
end
return out
"""

#: Make sure a room exists, as this node knows it; answer how it is.  A
#: room Redis lost (a restart without persistence), or kept from before a
#: restart (which may have lost its latest ids), starts again in the new
#: epoch the node proposes, after the highest id any node saw: an (epoch,
#: id) never names two messages.  Recording a room also keeps it from
#: expiring (see C{LEAVE}).
#: KEYS: room hash, stream, tags hash, tags queue, room index.
#: ARGV: name, key, fresh epoch, lineage JSON before it, last id, topic,
#: topic's author, the last id this node had from the cluster, Redis's run.
ROOM = """
local run, seen = ARGV[9], tonumber(ARGV[8])
local function extend(lineage, last)
  local steps = cjson.decode(lineage == '' and '[]' or lineage)
  local fresh = tonumber(ARGV[3])
  if #steps > 0 then fresh = math.max(fresh, steps[#steps][1] + 1) end
  fresh = string.format('%d', fresh)
  local step = '[' .. fresh .. ',' .. string.format('%d', last + 1) .. ']'
  if #steps == 0 then return '[' .. step .. ']', fresh end
  return string.sub(lineage, 1, -2) .. ',' .. step .. ']', fresh
end
local had = redis.call('HMGET', KEYS[1], 'epoch', 'run', 'lineage', 'last_id')
if not had[1] then
  local last = math.max(tonumber(ARGV[5]), seen)
  local lineage, epoch = extend(ARGV[4], last)
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'epoch', epoch, 'run', run,
    'lineage', lineage, 'last_id', last)
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[1], 'topic', ARGV[6], 'topic_by', ARGV[7])
  end
elseif had[2] ~= run then
  local last = math.max(tonumber(had[4] or '0'), seen)
  local lineage, epoch = extend(had[3] or '', last)
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'run', run, 'lineage', lineage,
    'last_id', last)
  redis.call('DEL', KEYS[3], KEYS[4])
elseif tonumber(had[4] or '0') < seen then
  redis.call('HSET', KEYS[1], 'last_id', seen)
end
for i = 1, 4 do redis.call('PERSIST', KEYS[i]) end
redis.call('ZADD', KEYS[5], 0, ARGV[2])
return redis.call('HMGET', KEYS[1], 'name', 'epoch', 'lineage', 'last_id',
  'topic', 'topic_by')
"""

_EMPTIED = """
local function emptied(p, r, ttl)
  if redis.call('EXISTS', p .. ':who:' .. r) == 1 then return end
  local room = p .. ':room:' .. r
  local parts = {room, room .. ':log', room .. ':tags', room .. ':tagq'}
  if tonumber(redis.call('HGET', room, 'last_id') or '0') == 0 then
    redis.call('DEL', unpack(parts))
    redis.call('ZREM', p .. ':roomindex', r)
  elseif ttl > 0 then
    for _, k in ipairs(parts) do redis.call('EXPIRE', k, ttl) end
  end
end
"""
"""
Lua for L{LEAVE} and L{HEARTBEAT}: a room nobody is in any more anywhere
is deleted at once when nothing was said there, or else left to expire
after C{[history] room_ttl} (recording the room or a member joining it
keeps it again; see L{ROOM} and L{MEMBER}).  The room index drops an
expired room when C{/rooms} comes across it (L{ROOMS}).
"""

#: A member of this node leaves rooms (see L{_EMPTIED}): their entry goes,
#: unless another node's user has the nick now (a session or an account
#: that went on there).
#: ARGV: prefix, room_ttl (s), the member's nick key, this node, then room
#: keys.
LEAVE = (
    _EMPTIED
    + """
local p, ttl, member, node = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
for i = 5, #ARGV do
  local who = p .. ':who:' .. ARGV[i]
  local entry = redis.call('HGET', who, member)
  if entry and cjson.decode(entry)[3] == node then
    redis.call('HDEL', who, member)
  end
  emptied(p, ARGV[i], ttl)
end
return 0
"""
)

#: A member of this node is in rooms: record them in each, and keep each
#: room from expiring.  Answers the rooms Redis does not have (deleted
#: when they emptied as the member joined, or lost in a restart): the node
#: records them again.
#: ARGV: prefix, the member's nick key, what C{who} keeps of them, then
#: room keys.
MEMBER = """
local p, member, entry = ARGV[1], ARGV[2], ARGV[3]
local missing = {}
for i = 4, #ARGV do
  local room = p .. ':room:' .. ARGV[i]
  redis.call('HSET', p .. ':who:' .. ARGV[i], member, entry)
  for _, k in ipairs({room, room .. ':log', room .. ':tags', room .. ':tagq'}) do
    redis.call('PERSIST', k)
  end
  if redis.call('EXISTS', room) == 0 then table.insert(missing, ARGV[i]) end
end
return missing
"""

#: Claim a nick.  Answers {1, ""} when claimed (or already this owner's),
#: {2, old owner} when taken over from the same session on another
#: connection (a resume; or from anyone, when the code is "*": the nick's
#: account's owner logged in), {0, owner} when someone else has it.
#: KEYS: the nick's key.  ARGV: owner ("node code"), expiry (ms), code.
CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ''}
end
local space = string.find(v, ' ', 1, true)
local code = space and string.sub(v, space + 1)
if space and (ARGV[3] == '*' or (ARGV[3] ~= '' and code == ARGV[3])) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, v}
end
return {0, v}
"""

#: Release a nick, if this owner still has it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: A node's heartbeat: note it is alive, renew its users' nick claims
#: (claiming again those Redis forgot), and bury nodes silent too long:
#: their users are taken out of every room and their nicks freed.
#: ARGV: prefix, node, node timeout (ms), nick expiry (ms), room_ttl (s),
#: then (nick key, owner) pairs.  The rooms the buried users leave empty
#: go as L{_EMPTIED} says.
#: Answers {nicks this node lost to others, whether this node had been
#: buried (it was cut off too long), the buried nodes' users as JSON
#: [nick, door, room keys, owner]}.
HEARTBEAT = (
    _EMPTIED
    + """
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', p .. ':nodes', now, node)
local was_buried = redis.call('DEL', p .. ':buried:' .. node)
local lost = {}
for i = 6, #ARGV, 2 do
  local key = p .. ':nick:' .. ARGV[i]
  local v = redis.call('GET', key)
  if not v or v == ARGV[i + 1] then
    redis.call('SET', key, ARGV[i + 1], 'PX', ARGV[4])
  else
    table.insert(lost, ARGV[i])
  end
end
local buried = {}
local old = redis.call('ZRANGEBYSCORE', p .. ':nodes', '-inf',
  now - tonumber(ARGV[3]))
for _, name in ipairs(old) do
  redis.call('ZREM', p .. ':nodes', name)
  local ukey = p .. ':users:' .. name
  local users = redis.call('HGETALL', ukey)
  for j = 1, #users, 2 do
    local u = cjson.decode(users[j + 1])
    for _, r in ipairs(u[3]) do
      redis.call('HDEL', p .. ':who:' .. r, users[j])
      emptied(p, r, ttl)
    end
    local nk = p .. ':nick:' .. users[j]
    if redis.call('GET', nk) == u[4] then redis.call('DEL', nk) end
    table.insert(buried, users[j + 1])
  end
  redis.call('DEL', ukey)
  redis.call('SET', p .. ':buried:' .. name, '1', 'EX', 86400)
end
return {lost, was_buried, buried}
"""
)

#: Who has a nick: {node, nick as they spell it}, or nil.
#: KEYS: the nick's key.  ARGV: prefix, nick key.
WHERE = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local node = string.sub(v, 1, (string.find(v, ' ', 1, true) or (#v + 1)) - 1)
local user = redis.call('HGET', ARGV[1] .. ':users:' .. node, ARGV[2])
if not user then return {node, ''} end
return {node, cjson.decode(user)[1]}
"""

#: One page of the rooms, by key, with their member counts and topics:
#: C{/rooms}.  Costs the page, not the number of rooms; rooms that expired
#: meanwhile are dropped from the index as they are come across.
#: ARGV: prefix, offset, count.
#: Answers {rooms in all, {{name, members, topic}, ...}}.
ROOMS = """
local p, offset, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local index = p .. ':roomindex'
local out, dropped = {}, 0
while #out < count and dropped < 1000 do
  local keys = redis.call('ZRANGE', index, offset + #out, offset + count - 1)
  if #keys == 0 then break end
  for _, r in ipairs(keys) do
    local room = redis.call('HMGET', p .. ':room:' .. r, 'name', 'topic')
    if room[1] then
      table.insert(out, {room[1], redis.call('HLEN', p .. ':who:' .. r),
        room[2] or ''})
    else
      redis.call('ZREM', index, r)
      dropped = dropped + 1
    end
  end
end
return {redis.call('ZCARD', index), out}
"""
