//! The Lua scripts of the Redis store (see the data model in [`super`]): each operation that
//! reads and then writes is one script, so it is atomic and one round trip.

use redis::Script;

/// The Lua scripts, compiled (hashed) once per process.
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) list: Script,
    pub(super) claim: Script,
    pub(super) heartbeat: Script,
    pub(super) progress: Script,
    pub(super) checkpoint: Script,
    pub(super) playable: Script,
    pub(super) complete: Script,
    pub(super) fail: Script,
    pub(super) requeue: Script,
    pub(super) revise: Script,
    pub(super) edit_lease: Script,
    pub(super) delete: Script,
    pub(super) take_announcements: Script,
    pub(super) announced: Script,
}

pub(super) fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create: Script::new(&format!("{PRELUDE}{CREATE}")),
        list: Script::new(&format!("{PRELUDE}{LIST}")),
        claim: Script::new(&format!("{PRELUDE}{CLAIM}")),
        heartbeat: Script::new(&format!("{PRELUDE}{HEARTBEAT}")),
        progress: Script::new(&format!("{PRELUDE}{PROGRESS}")),
        checkpoint: Script::new(&format!("{PRELUDE}{CHECKPOINT}")),
        playable: Script::new(&format!("{PRELUDE}{PLAYABLE}")),
        complete: Script::new(&format!("{PRELUDE}{COMPLETE}")),
        fail: Script::new(&format!("{PRELUDE}{FAIL}")),
        requeue: Script::new(&format!("{PRELUDE}{REQUEUE}")),
        revise: Script::new(&format!("{PRELUDE}{REVISE}")),
        edit_lease: Script::new(&format!("{PRELUDE}{EDIT_LEASE}")),
        delete: Script::new(&format!("{PRELUDE}{DELETE}")),
        take_announcements: Script::new(&format!("{PRELUDE}{TAKE_ANNOUNCEMENTS}")),
        announced: Script::new(&format!("{PRELUDE}{ANNOUNCED}")),
    })
}

/// Helpers every script starts with. Job fields hold JSON: a state is `"queued"` with quotes.
const PRELUDE: &str = r#"
local P = 'hls:'
local QUEUE, DELAYED, LEASES = P .. 'queue', P .. 'delayed', P .. 'leases'
local ANNOUNCE = P .. 'announce'
local function jkey(v) return P .. 'job:' .. v end

-- Whether two announcements (JSON) are the same outcome; one recorded before announcements
-- had a nonce counts as nonce 0, as it decodes.
local function same(a, b)
  local x, y = cjson.decode(a), cjson.decode(b)
  return x.ending == y.ending and x.at == y.at and (x.nonce or 0) == (y.nonce or 0)
end

-- Records an outcome's announcement (JSON; empty: outcomes are not announced), due then.
local function announce(key, v, announcement, due)
  if announcement == '' then return end
  redis.call('HSET', key, 'announce', announcement)
  redis.call('ZADD', ANNOUNCE, due, v)
end

-- The expiry of a lease field, nil without a lease.
local function expiry(lease)
  if not lease or lease == 'null' then return nil end
  return cjson.decode(lease).expires_at
end

-- Sets the state field (JSON) and keeps the per-state sets in step.
local function set_state(key, v, old, new)
  redis.call('HSET', key, 'state', new)
  if old and old ~= new then redis.call('SREM', P .. 'state:' .. cjson.decode(old), v) end
  redis.call('SADD', P .. 'state:' .. cjson.decode(new), v)
end

-- Files v in the one scheduling set its record calls for (none once it is gone).
local function refile(v)
  redis.call('ZREM', QUEUE, v)
  redis.call('ZREM', DELAYED, v)
  redis.call('ZREM', LEASES, v)
  local f = redis.call('HMGET', jkey(v), 'state', 'lease', 'not_before')
  if f[1] == '"queued"' then
    redis.call('ZADD', DELAYED, f[3], v)
  elseif f[1] == '"processing"' then
    local e = expiry(f[2])
    redis.call('ZADD', LEASES, e and string.format('%d', e) or '-inf', v)
  end
end

-- 1 if worker holds a live lease on the job at key at now, 0 if there is no job, -1 if not.
local function held(key, worker, now)
  local f = redis.call('HMGET', key, 'state', 'lease')
  if not f[1] then return 0 end
  if f[1] ~= '"processing"' or not f[2] or f[2] == 'null' then return -1 end
  local l = cjson.decode(f[2])
  if l.worker ~= worker or l.expires_at < now then return -1 end
  return 1
end
"#;

/// KEYS: job, owner index. ARGV: video, -created_at, then field/value pairs.
const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
set_state(KEYS[1], ARGV[1], nil, redis.call('HGET', KEYS[1], 'state'))
refile(ARGV[1])
return 1
"#;

/// KEYS: owner index. ARGV: start, stop (inclusive ranks). Flat HGETALL replies.
const LIST: &str = r#"
local out = {}
for _, v in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local h = redis.call('HGETALL', jkey(v))
  if #h > 0 then out[#out + 1] = h end
end
return out
"#;

/// ARGV: now, lease JSON, lease expiry, max attempts, the error JSON of a job whose workers
/// all died, the announcement JSON of its failure (empty: none) and when that is due. First
/// the claimed job (empty if none): the previous lease (empty unless taken over) followed by
/// its flat HGETALL; then the flat HGETALL of each job whose lease ran out after its last
/// attempt, failed on the way.
const CLAIM: &str = r#"
local now = tonumber(ARGV[1])
local out = {{}}
local function promote(v)
  redis.call('ZREM', DELAYED, v)
  redis.call('ZREM', LEASES, v)
  local c = redis.call('HGET', jkey(v), 'created_at')
  if c then redis.call('ZADD', QUEUE, c, v) end
end
for _, v in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', ARGV[1])) do promote(v) end
for _, v in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. ARGV[1])) do promote(v) end
while true do
  local v = redis.call('ZRANGE', QUEUE, 0, 0)[1]
  if not v then return out end
  local key = jkey(v)
  local f = redis.call('HMGET', key, 'state', 'lease', 'not_before', 'attempts')
  local ok = false
  if f[1] == '"queued"' then
    ok = tonumber(f[3]) <= now
  elseif f[1] == '"processing"' then
    local e = expiry(f[2])
    ok = e == nil or e < now
    if ok and tonumber(f[4] or '0') >= tonumber(ARGV[4]) then
      set_state(key, v, f[1], '"failed"')
      redis.call('HSET', key, 'error', ARGV[5], 'lease', 'null', 'playable', 'false',
        'updated_at', ARGV[1])
      announce(key, v, ARGV[6], ARGV[7])
      out[#out + 1] = redis.call('HGETALL', key)
      ok = false
    end
  end
  if ok then
    set_state(key, v, f[1], '"processing"')
    redis.call('HSET', key, 'lease', ARGV[2], 'updated_at', ARGV[1])
    redis.call('HINCRBY', key, 'attempts', 1)
    refile(v)
    local claimed = redis.call('HGETALL', key)
    local previous = ''
    if f[1] == '"processing"' then previous = f[2] or 'null' end
    table.insert(claimed, 1, previous)
    out[1] = claimed
    return out
  end
  refile(v)
end
"#;

/// KEYS: job. ARGV: video, worker, now, lease JSON.
const HEARTBEAT: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
redis.call('HSET', KEYS[1], 'lease', ARGV[4], 'updated_at', ARGV[3])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, stage JSON, percent JSON (empty: keep), '1' if the
/// thumbnail is ready, JSON of 100.
const PROGRESS: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
local cur = tonumber(redis.call('HGET', KEYS[1], 'progress'))
local new = nil
if ARGV[5] ~= '' and tonumber(ARGV[5]) > cur then new = ARGV[5] end
if tonumber(new or cur) > 100 then new = ARGV[7] end
local set = {'stage', ARGV[4], 'updated_at', ARGV[3]}
if new then
  set[#set + 1] = 'progress'
  set[#set + 1] = new
end
if ARGV[6] == '1' then
  set[#set + 1] = 'thumbnail_ready'
  set[#set + 1] = 'true'
end
redis.call('HSET', KEYS[1], unpack(set))
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, rung, rung JSON.
const CHECKPOINT: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
local cps = redis.call('HGET', KEYS[1], 'checkpoints')
for _, r in ipairs(cjson.decode(cps)) do
  if r == ARGV[4] then
    redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
    return 1
  end
end
if cps == '[]' then
  cps = '[' .. ARGV[5] .. ']'
else
  cps = string.sub(cps, 1, -2) .. ',' .. ARGV[5] .. ']'
end
redis.call('HSET', KEYS[1], 'checkpoints', cps, 'updated_at', ARGV[3])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, stage JSON (done), result JSON, JSON of 100, the
/// announcement JSON (empty: none), when it is due.
const COMPLETE: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
set_state(KEYS[1], ARGV[1], '"processing"', '"ready"')
redis.call('HSET', KEYS[1], 'stage', ARGV[4], 'progress', ARGV[6], 'error', 'null',
  'lease', 'null', 'result', ARGV[5], 'updated_at', ARGV[3])
announce(KEYS[1], ARGV[1], ARGV[7], ARGV[8])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, `true` or `false`.
const PLAYABLE: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
redis.call('HSET', KEYS[1], 'playable', ARGV[4], 'updated_at', ARGV[3])
return 1
"#;

/// KEYS: job. ARGV: video, worker, now, error JSON, retry time (empty: final), stage JSON
/// (queued), the announcement JSON of a final failure (empty: none), when it is due.
const FAIL: &str = r#"
local h = held(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if h ~= 1 then return h end
redis.call('HSET', KEYS[1], 'error', ARGV[4], 'lease', 'null', 'playable', 'false',
  'updated_at', ARGV[3])
if ARGV[5] ~= '' then
  set_state(KEYS[1], ARGV[1], '"processing"', '"queued"')
  redis.call('HSET', KEYS[1], 'stage', ARGV[6], 'not_before', ARGV[5])
else
  set_state(KEYS[1], ARGV[1], '"processing"', '"failed"')
  announce(KEYS[1], ARGV[1], ARGV[7], ARGV[8])
end
refile(ARGV[1])
return 1
"#;

/// KEYS: job. ARGV: video, now, stage JSON (queued), JSON of 0, the state it must still be in
/// (JSON). Returns 0 without a job, 2 when it has moved on, 1 once queued.
const REQUEUE: &str = r#"
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return 0 end
if old ~= ARGV[5] then return 2 end
set_state(KEYS[1], ARGV[1], old, '"queued"')
redis.call('HSET', KEYS[1], 'stage', ARGV[3], 'progress', ARGV[4], 'error', 'null',
  'attempts', '0', 'not_before', '0', 'lease', 'null', 'checkpoints', '[]', 'playable', 'false',
  'announce', 'null', 'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'revision', 1)
redis.call('ZREM', ANNOUNCE, ARGV[1])
refile(ARGV[1])
return 1
"#;

/// KEYS: job. Returns 0 when there is no such job (HINCRBY alone would create one).
const REVISE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'revision', 1)
return 1
"#;

/// KEYS: job. ARGV: holder, now, the step (`take`, `renew` or `give`), the editor field it
/// writes (the lease's JSON, or `null`). The rules of `Job::edit_lease`: returns 0 without a
/// job, 2 when the step does nothing, 1 once it is done.
const EDIT_LEASE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local held = redis.call('HGET', KEYS[1], 'editor')
local e = nil
if held and held ~= 'null' then e = cjson.decode(held) end
local mine = e ~= nil and e.worker == ARGV[1]
local allowed = mine
if ARGV[3] == 'take' then allowed = e == nil or mine or e.expires_at < tonumber(ARGV[2]) end
if not allowed then return 2 end
redis.call('HSET', KEYS[1], 'editor', ARGV[4])
return 1
"#;

/// KEYS: job. ARGV: video.
const DELETE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'state')
if f[1] then redis.call('ZREM', P .. 'owner:' .. cjson.decode(f[1]), ARGV[1]) end
if f[2] then redis.call('SREM', P .. 'state:' .. cjson.decode(f[2]), ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ANNOUNCE, ARGV[1])
refile(ARGV[1])
return 1
"#;

/// ARGV: now, the end of the taker's lease, how many at most, the video (empty: those due),
/// the hold, for a video `held` (its own worker's: while its score is still the end of the
/// hold, nobody else having taken it, or once due) or `taken` (whoever has it, if the record
/// still holds the announcement JSON that follows). Flat HGETALL replies of the jobs taken;
/// an entry whose job has nothing to announce (any more) leaves the index, and a video's
/// announcement missing from the index is filed again.
const TAKE_ANNOUNCEMENTS: &str = r#"
local vs = {ARGV[4]}
if ARGV[4] == '' then
  vs = redis.call('ZRANGEBYSCORE', ANNOUNCE, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
end
local out = {}
for _, v in ipairs(vs) do
  local a = redis.call('HGET', jkey(v), 'announce')
  local score = redis.call('ZSCORE', ANNOUNCE, v)
  if not a or a == 'null' then
    redis.call('ZREM', ANNOUNCE, v)
  else
    local free = not score or tonumber(score) <= tonumber(ARGV[1])
    if ARGV[6] == 'held' and not free then
      free = tonumber(score) == cjson.decode(a).at + tonumber(ARGV[5])
    elseif ARGV[6] == 'taken' then
      free = same(a, ARGV[7])
    end
    if free then
      redis.call('ZADD', ANNOUNCE, ARGV[2], v)
      out[#out + 1] = redis.call('HGETALL', jkey(v))
    end
  end
end
return out
"#;

/// KEYS: job. ARGV: video, the announcement (JSON) it must still hold. Returns 1 once cleared.
const ANNOUNCED: &str = r#"
local a = redis.call('HGET', KEYS[1], 'announce')
if not a or a == 'null' or not same(a, ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'announce', 'null')
redis.call('ZREM', ANNOUNCE, ARGV[1])
return 1
"#;
