//! The Lua scripts behind [`super::RedisAuthState`]. Each runs atomically on the Redis node that
//! owns its keys (every key of one script shares a hash tag), so two nodes never interleave
//! inside "check both budgets, then spend both" or "reserve a guess, then settle it".
//!
//! Time is Redis's own (`TIME`, milliseconds), so the nodes' clocks do not matter. Buckets are
//! two hash fields, tokens and the time they were counted; a key lives at least until its
//! buckets are full again and its codes, lock and run of misses are over ([`PRELUDE`]'s `keep`
//! never shortens a lifetime), so an expired key is exactly an untouched one.

/// Helpers every script starts with.
pub(super) const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function level(key, ft, fa, burst, per_ms, now)
  local v = redis.call('HMGET', key, ft, fa)
  local tok, at = tonumber(v[1]), tonumber(v[2])
  if tok == nil or at == nil then return burst end
  local l = tok + math.max(0, now - at) * per_ms
  if l > burst then l = burst end
  return l
end
local function refill_ms(tok, burst, per_ms, cap)
  if tok >= burst then return 0 end
  if per_ms <= 0 then return cap end
  return math.min(cap, math.ceil((burst - tok) / per_ms))
end
local function keep(key, ms)
  ms = math.floor(ms) + 1000
  local cur = redis.call('PTTL', key)
  if cur < ms then redis.call('PEXPIRE', key, ms) end
end
"#;

/// KEYS: bucket. ARGV: burst, tokens per ms, longest lifetime (ms). Answers 1 (taken) or 0.
pub(super) const TAKE: &str = r#"
local burst, per_ms, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if burst < 1 then return 0 end
local now = now_ms()
local l = level(KEYS[1], 't', 'a', burst, per_ms, now)
if l < 1 then return 0 end
l = l - 1
redis.call('HSET', KEYS[1], 't', l, 'a', now)
keep(KEYS[1], refill_ms(l, burst, per_ms, cap))
return 1
"#;

/// KEYS: pair, identifier's request bucket. ARGV: pair burst, pair rate, identifier burst,
/// identifier rate, longest lifetime. Both are checked before either is spent; answers 1 or 0.
pub(super) const REQUEST: &str = r#"
local pb, pr = tonumber(ARGV[1]), tonumber(ARGV[2])
local ib, ir, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local pl = level(KEYS[1], 'rt', 'ra', pb, pr, now)
local il = level(KEYS[2], 't', 'a', ib, ir, now)
if pl < 1 or il < 1 then return 0 end
pl = pl - 1
il = il - 1
redis.call('HSET', KEYS[1], 'rt', pl, 'ra', now)
redis.call('HSET', KEYS[2], 't', il, 'a', now)
keep(KEYS[1], refill_ms(pl, pb, pr, cap))
keep(KEYS[2], refill_ms(il, ib, ir, cap))
return 1
"#;

/// KEYS: the identifier's code entry. ARGV: the new code's tag (hex), code lifetime (ms), how
/// long the entry is kept at least (ms). A still-live current code becomes the replaced one
/// (its digits then answer "expired"); the new code is current.
pub(super) const ISSUE: &str = r#"
local now = now_ms()
local v = redis.call('HMGET', KEYS[1], 'c', 'ce')
if v[1] and tonumber(v[2]) > now then
  redis.call('HSET', KEYS[1], 'r', v[1], 're', v[2])
end
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'ce', now + tonumber(ARGV[2]))
keep(KEYS[1], tonumber(ARGV[3]))
return 1
"#;

/// KEYS: pair, code entry. ARGV: failure burst, failure rate, longest lifetime.
/// Answers `{'locked'}`, `{'exhausted'}`, or `{'open', current tag, live '1'/'0', replaced
/// tag}` after reserving one failure: the node compares in constant time and settles with
/// [`SETTLE`], so the failure budget bounds guesses even while comparisons run in parallel.
pub(super) const GATE: &str = r#"
local now = now_ms()
local lk = tonumber(redis.call('HGET', KEYS[1], 'lk'))
if lk and lk > now then return {'locked'} end
local fb, fr, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local l = level(KEYS[2], 'ft', 'fa', fb, fr, now)
if l < 1 then return {'exhausted'} end
l = l - 1
redis.call('HSET', KEYS[2], 'ft', l, 'fa', now)
keep(KEYS[2], refill_ms(l, fb, fr, cap))
local v = redis.call('HMGET', KEYS[2], 'c', 'ce', 'r')
local live = '0'
if v[1] and tonumber(v[2]) > now then live = '1' end
return {'open', v[1] or '', live, v[3] or ''}
"#;

/// KEYS: pair, code entry. ARGV: outcome (`ok`, `expired`, `wrong`), the tag found current
/// (for `ok`), failure burst, failure rate, longest lifetime, free misses, first lock (ms),
/// longest lock (ms), forget a run of misses after (ms).
/// `ok` consumes the code if it is still the live current one (a parallel login or a new code
/// may have come first: then `expired`) and ends the pair's run of misses; `ok` and `expired`
/// give back the reserved failure; `wrong` keeps it, counts a miss and may lock the pair.
/// Answers `{'ok'}`, `{'expired'}` or `{'wrong', locked '1'/'0', failures left '1'/'0'}`.
pub(super) const SETTLE: &str = r#"
local now = now_ms()
local fb, fr, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function refund()
  local l = level(KEYS[2], 'ft', 'fa', fb, fr, now) + 1
  if l > fb then l = fb end
  redis.call('HSET', KEYS[2], 'ft', l, 'fa', now)
end
local o = ARGV[1]
if o == 'ok' then
  local v = redis.call('HMGET', KEYS[2], 'c', 'ce')
  refund()
  if v[1] == ARGV[2] and tonumber(v[2]) > now then
    redis.call('HSET', KEYS[2], 'r', v[1], 're', v[2])
    redis.call('HDEL', KEYS[2], 'c', 'ce')
    redis.call('HDEL', KEYS[1], 'm', 'lm', 'lk')
    return {'ok'}
  end
  return {'expired'}
end
if o == 'expired' then
  refund()
  return {'expired'}
end
local free, first, maxl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local forget = tonumber(ARGV[9])
local v = redis.call('HMGET', KEYS[1], 'm', 'lm')
local m, lm = tonumber(v[1]) or 0, tonumber(v[2]) or now
if m > 0 and now - lm >= forget then m = 0 end
m = m + 1
redis.call('HSET', KEYS[1], 'm', m, 'lm', now)
local locked = '0'
local life = forget
if m >= free then
  local lock = math.min(first * 2 ^ math.min(m - free, 60), maxl)
  redis.call('HSET', KEYS[1], 'lk', now + lock)
  locked = '1'
  life = math.max(life, lock)
end
keep(KEYS[1], life)
local left = '0'
if level(KEYS[2], 'ft', 'fa', fb, fr, now) >= 1 then left = '1' end
return {'wrong', locked, left}
"#;
