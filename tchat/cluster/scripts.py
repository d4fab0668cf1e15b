# -*- test-case-name: tests.test_cluster -*-
"""
The cluster's Lua scripts: each runs atomically in Redis.

Every change that must not interleave with another node's (numbering a
message, claiming a nick, burying a dead node) is one script.
"""

#: Number, keep and publish a room message.  A message whose client tag was
#: seen already (a client's retry reaching another node) is not said again:
#: the script answers with the first one's id.
#: KEYS: room hash, stream, tags hash, tags queue, rooms index.
#: ARGV: channel, messages kept, tag ("" for none), room name, message JSON
#: (without id and epoch), epoch for a new room, room key.
SAY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'name', ARGV[4], 'epoch', epoch,
    'lineage', '[[' .. epoch .. ',1]]')
  redis.call('HSET', KEYS[5], ARGV[7], ARGV[4])
end
if ARGV[3] ~= '' then
  local prior = redis.call('HGET', KEYS[3], ARGV[3])
  if prior then return {0, tonumber(prior), epoch} end
end
local id = redis.call('HINCRBY', KEYS[1], 'last_id', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-1', 'e', epoch,
  'm', ARGV[5])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[3], id)
  redis.call('RPUSH', KEYS[4], ARGV[3])
  if redis.call('LLEN', KEYS[4]) > tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
  end
end
redis.call('PUBLISH', ARGV[1], '{"t":"msg","room":' .. cjson.encode(ARGV[4]) ..
  ',"id":' .. id .. ',"e":' .. epoch .. ',"m":' .. ARGV[5] .. '}')
return {1, id, epoch}
"""

#: Make sure a room exists, as this node knows it; answer how it is.  A
#: room Redis lost (a restart without persistence) is created again from
#: this node's view, in the new epoch the node proposes.
#: KEYS: room hash, rooms index.
#: ARGV: name, key, epoch, lineage JSON, last id, topic, topic's author,
#: and the last id this node had from the cluster: an existing room's
#: counter is raised to it (after a restart, the node that created the room
#: again may have seen fewer messages than another).
ROOM = """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'lineage', ARGV[4],
    'last_id', ARGV[5])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[1], 'topic', ARGV[6], 'topic_by', ARGV[7])
  end
elseif tonumber(redis.call('HGET', KEYS[1], 'last_id') or '0') < tonumber(ARGV[8]) then
  redis.call('HSET', KEYS[1], 'last_id', ARGV[8])
end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
return redis.call('HMGET', KEYS[1], 'name', 'epoch', 'lineage', 'last_id',
  'topic', 'topic_by')
"""

#: Claim a nick.  Answers {1, ""} when claimed (or already this owner's),
#: {2, old owner} when taken over from the same session on another
#: connection (a resume), {0, owner} when someone else has it.
#: KEYS: the nick's key.  ARGV: owner ("node code"), expiry (ms), code.
CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ''}
end
local space = string.find(v, ' ', 1, true)
if ARGV[3] ~= '' and space and string.sub(v, space + 1) == ARGV[3] then
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
#: ARGV: prefix, node, node timeout (ms), nick expiry (ms), then
#: (nick key, owner) pairs.
#: Answers {nicks this node lost to others, whether this node had been
#: buried (it was cut off too long), the buried nodes' users as JSON
#: [nick, door, room keys, owner]}.
HEARTBEAT = """
local p, node = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', p .. ':nodes', now, node)
local was_buried = redis.call('DEL', p .. ':buried:' .. node)
local lost = {}
for i = 5, #ARGV, 2 do
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

#: Every room, with its member count and topic: C{/rooms}.
ROOMS = """
local p = ARGV[1]
local rooms = redis.call('HGETALL', p .. ':rooms')
local out = {}
for i = 1, #rooms, 2 do
  local topic = redis.call('HGET', p .. ':room:' .. rooms[i], 'topic')
  table.insert(out, {rooms[i + 1], redis.call('HLEN', p .. ':who:' .. rooms[i]),
    topic or ''})
end
return out
"""
