//! The Lua scripts behind every session mutation. Redis runs each one atomically; every key a
//! script touches is in its KEYS, and all of them carry the user's hash tag, so each runs on one
//! Redis Cluster slot.
//!
//! A script may be sent twice: the cluster client re-sends a command whose connection dropped
//! before the answer came. So each is safe to run again: LOGIN sees its new session already
//! written, INCREMENT sees its operation key (cluster only), LOGOUT and LOGOUT_EVERYWHERE end
//! what is already ended.

/// Returned by LOGIN and LOGOUT_EVERYWHERE when the index lists a session whose key the caller
/// did not pass (a login of the same user came in between): read the index again and retry.
pub(super) const STALE: i64 = -1;

/// How often a login or a logout everywhere is tried again after [`STALE`].
pub(super) const STALE_ATTEMPTS: usize = 5;

/// Login: creates the new session (carrying the count of the previous one when given, which
/// must still exist), indexes it, forgets index entries whose session ended, and enforces the
/// per-user cap.
///
/// Every key the script touches is in KEYS, as Redis's script contract (and any cluster proxy)
/// requires, so the caller first reads the index (ZRANGE) and passes each listed session's key.
/// A session indexed since (a concurrent login) is new and alive: it needs no pruning, and as the
/// newest it is never among the oldest the cap ends; only if it were (clocks of two writers far
/// apart) does the script answer STALE.
///
/// The new session's value is the count followed by what the login knows of the user and the
/// device (`\n<identity>\n<device>`, see [`crate::identity`]).
///
/// KEYS: 1 index, 2 new session, 2+i the session of listed id i (i = 1..n), [3+n previous]
/// ARGV: 1 new id, 2 lifetime ms, 3 issued ms, 4 cap (0 = none), 5 index lifetime ms,
///       6 previous id ('' = none), 7 what follows the count, 7+i listed id i
/// Returns {the count of the new session, how many sessions the cap ended}, nil when the
/// previous session is gone, or STALE. Run again, it finds the new session (its id is random
/// and new) and answers its count (and 0: what the cap ended was counted the first time).
pub(super) const LOGIN: &str = r#"
local function count_of(value)
  local cut = string.find(value, '\n', 1, true)
  if cut then return string.sub(value, 1, cut - 1) end
  return value
end
local again = redis.call('GET', KEYS[2])
if again then return {tonumber(count_of(again)), 0} end
local n = #ARGV - 7
local key_of = {}
for i = 1, n do key_of[ARGV[7 + i]] = KEYS[2 + i] end
local count = '0'
local previous = ARGV[6]
if previous ~= '' then
  local previous_key = KEYS[3 + n]
  local previous_value = redis.call('GET', previous_key)
  if not previous_value then return nil end
  count = count_of(previous_value)
  redis.call('DEL', previous_key)
  redis.call('ZREM', KEYS[1], previous)
end
local cap = tonumber(ARGV[4])
if cap > 0 then
  -- The sessions the cap will end, known before anything is written.
  local excess = redis.call('ZCARD', KEYS[1]) + 1 - cap
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
      if not key_of[id] then return -1 end
    end
  end
end
local lifetime = tonumber(ARGV[2])
redis.call('SET', KEYS[2], count .. ARGV[7], 'PX', lifetime)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
for id, key in pairs(key_of) do
  if id ~= previous and redis.call('EXISTS', key) == 0 then redis.call('ZREM', KEYS[1], id) end
end
local capped = 0
if cap > 0 then
  local excess = redis.call('ZCARD', KEYS[1]) - cap
  if excess > 0 then
    -- The oldest first; the new session is the newest, so it is never among them.
    for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
      if key_of[id] then capped = capped + redis.call('DEL', key_of[id]) end
    end
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
  end
end
local index_lifetime = tonumber(ARGV[5])
if redis.call('PTTL', KEYS[1]) < index_lifetime then redis.call('PEXPIRE', KEYS[1], index_lifetime) end
return {tonumber(count), capped}
"#;

/// Increment: only an existing session is changed; its idle timeout restarts, and the index is
/// kept alive at least as long. Only the count, the value's first line, changes; a value of the
/// older layout (the count alone) is a plain `INCR`.
///
/// KEYS: 1 session, 2 index, [3 operation key].
/// ARGV: 1 lifetime ms, 2 index lifetime ms, [3 operation memory ms].
/// Returns the new count, or nil when the session does not exist.
///
/// With an operation key (a random id under the user's hash tag, sent when the client may re-send
/// the call) the answer is remembered for [`OPERATION_MEMORY_MS`], and a second run answers it
/// instead of counting twice.
pub(super) const INCREMENT: &str = r#"
local operation = KEYS[3]
if operation then
  local done = redis.call('GET', operation)
  if done then return tonumber(done) end
end
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return nil end
redis.call('PEXPIRE', KEYS[2], ARGV[2], 'GT')
local value = redis.call('GET', KEYS[1])
local cut = string.find(value, '\n', 1, true)
local count
if cut then
  count = tonumber(string.sub(value, 1, cut - 1)) + 1
  redis.call('SET', KEYS[1], string.format('%d', count) .. string.sub(value, cut), 'KEEPTTL')
else
  count = redis.call('INCR', KEYS[1])
end
if operation then redis.call('SET', operation, count, 'PX', ARGV[3]) end
return count
"#;

/// How long an increment's operation key outlives it: far longer than any re-send, which
/// happens within one operation's bound.
pub(super) const OPERATION_MEMORY_MS: u64 = 10_000;

/// Logout of one session. KEYS: 1 session, 2 index.  ARGV: 1 session id.
pub(super) const LOGOUT: &str = r#"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end
return 1
"#;

/// Ends listed sessions of one user (the sessions page, a back-channel logout).
/// KEYS: 1 index, 1+i the session of id i.  ARGV: the ids.
/// Returns how many of them still existed.
pub(super) const END: &str = r#"
local ended = 0
for i = 1, #ARGV do
  ended = ended + redis.call('DEL', KEYS[1 + i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return ended
"#;

/// What the sessions page shows of listed sessions: each one's value and remaining
/// lifetime (ms), or false and -2 when it has ended.
/// KEYS: the sessions.
pub(super) const LIST: &str = r#"
local found = {}
for i = 1, #KEYS do
  found[i] = {redis.call('GET', KEYS[i]), redis.call('PTTL', KEYS[i])}
end
return found
"#;

/// Logout of every session of a user. KEYS: 1 index, 2 current session, 2+i the session of
/// listed id i. ARGV: the listed ids, as the caller read them (see LOGIN).
/// Returns how many sessions ended, or STALE when the index lists a session not passed (a login
/// came in between: it must end too).
pub(super) const LOGOUT_EVERYWHERE: &str = r#"
local passed = {}
for _, id in ipairs(ARGV) do passed[id] = true end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not passed[id] then return -1 end
end
local ended = redis.call('DEL', KEYS[2])
for i = 3, #KEYS do
  ended = ended + redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[1])
return ended
"#;
