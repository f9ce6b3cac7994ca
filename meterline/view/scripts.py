"""The view's Lua scripts (Redis 6.2: loaded once, called with EVALSHA).

Key names are computed by Python and passed in ARGV, so one call can carry a whole batch.

Quantities (values, sums, amounts, limits) are whole numbers of millionths written as decimal
digit strings (`meterline.values`), stored as such in Redis and added and compared by `add` and
`less` digit by digit: a Lua number is a double, exact only below 2^53, and ten events of 1e15
plus one of 3 are 10^22 + 3*10^6 millionths. `add` takes the short cut of doubles while both
terms have at most 15 digits (their sum stays below 2^53); sums into hash fields go through
HINCRBY (exact 64-bit integers, in C) and fall back to `add` only past 2^63. Times and epochs
are integers far below 2^53 and stay Lua numbers. Every quantity goes back to Python as its
digit string.
"""

from __future__ import annotations

# Fold and merge helpers shared by every script. Aggregation codes: s sum, c count, m max,
# l latest (a field `f` keeps its event time in `f@`).
_COMMON = r"""
local function num(x) return string.format('%.17g', x) end

-- Non-negative integers as digit strings without leading zeros ('0' for zero).
local function add(a, b)
  if #a < 16 and #b < 16 then return string.format('%.0f', tonumber(a) + tonumber(b)) end
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local x = i > 0 and tonumber(string.sub(a, math.max(1, i - 6), i)) or 0
    local y = j > 0 and tonumber(string.sub(b, math.max(1, j - 6), j)) or 0
    local s = x + y + carry
    carry = math.floor(s / 10000000)
    table.insert(out, 1, string.format('%07d', s - carry * 10000000))
    i, j = i - 7, j - 7
  end
  local text = string.gsub(table.concat(out), '^0+', '')
  if text == '' then return '0' end
  return text
end

local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function merge_field(key, f, agg, vs, ts, tss)
  if agg == 's' then
    local r = redis.pcall('HINCRBY', key, f, vs)
    if type(r) == 'table' and r.err then  -- past 2^63 (or held as a longer digit string)
      redis.call('HSET', key, f, add(redis.call('HGET', key, f) or '0', vs))
    end
  elseif agg == 'm' then
    local cur = redis.call('HGET', key, f)
    if not cur or less(cur, vs) then redis.call('HSET', key, f, vs) end
  else
    local cur = redis.call('HMGET', key, f, f .. '@')
    local cts = tonumber(cur[2])
    if not cts or ts > cts or (ts == cts and less(cur[1], vs)) then
      redis.call('HSET', key, f, vs, f .. '@', tss)
    end
  end
end

-- Read fields of hashes and fold them, starting from an archived (value, latest_ms) when
-- `base_v` is not ''; spec starts at args[i]: n_keys, then per key (key, n_fields, fields...).
-- Returns the folded value.
local function read_usage(agg, args, i, base_v, base_ts)
  local total, best_ts, seen = '0', nil, false
  if base_v and base_v ~= '' then
    total, best_ts, seen = base_v, tonumber(base_ts), true
  end
  local nkeys = tonumber(args[i]); i = i + 1
  for _ = 1, nkeys do
    local key, nf = args[i], tonumber(args[i + 1]); i = i + 2
    local fields = {}
    for j = 1, nf do
      fields[#fields + 1] = args[i + j - 1]
      if agg == 'l' then fields[#fields + 1] = args[i + j - 1] .. '@' end
    end
    i = i + nf
    if #fields > 0 then
      local vals = redis.call('HMGET', key, unpack(fields))
      local step = (agg == 'l') and 2 or 1
      for j = 1, #vals, step do
        local v = vals[j]
        if v then
          if agg == 's' then total = add(total, v)
          elseif agg == 'm' then if not seen or less(total, v) then total = v end
          else
            local ts = tonumber(vals[j + 1]) or 0
            if not seen or ts > (best_ts or 0) or (ts == best_ts and less(total, v)) then
              total, best_ts = v, ts
            end
          end
          seen = true
        end
      end
    end
  end
  return total, i
end

-- The series' settled epoch, as readers compare it ('0' when there is none).
local function epoch_of(key)
  return redis.call('GET', key) or '0'
end
"""

# KEYS: ready marker, rebuild flag, watermark hash; optionally the touched set and its counter
#   (meterline/view/touched.py: the customers whose usage changed, for threshold detection).
# ARGV: mode ('gated' | 'load' | 'plain'), token (load) or watermark field (gated),
#   previous offset ('' = none), next offset, n_deltas, n_reservations, now_ms, counted_ttl_ms,
#   the deltas as one JSON array of arrays of 11 strings: agg, month key, day field, hour field,
#   zset key, minute hash key, minute_ms, value (millionths), latest_ms, month expire-at (s), minute
#   expire-at (s, '0' = skip), epoch key to move forward ('' = the minute is within the horizon),
#   the touched members as one JSON array ('' = none),
#   then 2 per counted reservation: reservation key, event id.
# Returns 'applied' | 'skipped' | 'rebuilding' | 'empty' | 'gap'.
APPLY = (
    _COMMON
    + r"""
local mode = ARGV[1]
local flag = redis.call('GET', KEYS[2])
if flag and not (mode == 'load' and flag == ARGV[2]) then return 'rebuilding' end
local nd, nr = tonumber(ARGV[5]), tonumber(ARGV[6])
local now, counted_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local outcome = 'applied'
if mode == 'gated' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'empty' end
  local wm = tonumber(redis.call('HGET', KEYS[3], ARGV[2]))
  local nxt = tonumber(ARGV[4])
  if wm and wm >= nxt then outcome = 'skipped'
  elseif (wm == nil) ~= (ARGV[3] == '') or (wm and wm ~= tonumber(ARGV[3])) then
    return 'gap'
  else
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
  end
end
local epoch_ttl = 400 * 86400000
local expired = {}
local function expire_at(key, at)
  if not expired[key] then redis.call('EXPIREAT', key, at); expired[key] = true end
end
if outcome == 'applied' and nd > 0 then
  for _, d in ipairs(cjson.decode(ARGV[9])) do
    local agg, mkey = d[1], d[2]
    local ts = tonumber(d[9])
    local vs, tss = d[8], d[9]
    merge_field(mkey, 'T', agg, vs, ts, tss)
    merge_field(mkey, d[3], agg, vs, ts, tss)
    merge_field(mkey, d[4], agg, vs, ts, tss)
    expire_at(mkey, d[10])
    if d[11] ~= '0' then
      redis.call('ZADD', d[5], d[7], d[7])
      merge_field(d[6], d[7], agg, vs, ts, tss)
      expire_at(d[5], d[11])
      expire_at(d[6], d[11])
    end
    if d[12] ~= '' and not expired[d[12]] then
      local e = math.max(tonumber(epoch_of(d[12])) + 1, now)
      redis.call('SET', d[12], num(e), 'PX', epoch_ttl)
      expired[d[12]] = true
    end
  end
end
if outcome == 'applied' and KEYS[4] and ARGV[10] ~= '' then
  local seq = redis.call('INCR', KEYS[5])
  local marked, args = cjson.decode(ARGV[10]), {}
  for i, m in ipairs(marked) do  -- one ZADD per 500 members (unpack's stack is bounded)
    args[#args + 1] = seq
    args[#args + 1] = m
    if #args == 1000 or i == #marked then
      redis.call('ZADD', KEYS[4], unpack(args))
      args = {}
    end
  end
end
local r = 11
for k = 0, nr - 1 do
  local rkey, id = ARGV[r + k * 2], ARGV[r + k * 2 + 1]
  redis.call('HDEL', rkey, id)
  redis.call('ZADD', rkey .. ':c', now + counted_ttl, id)
  redis.call('PEXPIRE', rkey .. ':c', counted_ttl)
end
return outcome
"""
)

# KEYS: epoch key. ARGV: agg, expected epoch ('' = no archived part), archived value ('' =
#   none), its latest_ms, then the usage spec (see read_usage).
# Returns the value as a string, or {'stale'} when the epoch moved (read the archive again).
USAGE = (
    _COMMON
    + r"""
if ARGV[2] ~= '' and epoch_of(KEYS[1]) ~= ARGV[2] then return {'stale'} end
local v = read_usage(ARGV[1], ARGV, 5, ARGV[3], ARGV[4])
return v
"""
)

# KEYS: pending hash, counted zset, ready marker, rebuild flag, epoch key.
# ARGV: event id, amount, limit ('' = none, '-' = grant nothing: a probe), now_ms, at_ms (the
#   instant the reservation is attributed to, inside the period's minutes: its event carries
#   it), the period's minutes lo and hi (ms), expected epoch ('' = no archived part), archived
#   usage ('' = none), usage counted elsewhere ('' = the view must be ready), then the usage
#   spec of the period (summed).
# A pending entry is `amount|at_ms` and stays until its event is counted (APPLY), it is
# released, or a rebuild finds its event counted: it never lapses while the aggregator lags.
# (Entries written before this layout carry a third field, an expiry, which is ignored.)
# Quantities (amount, limit, archived and counted usage, the pending entries' amounts) are
# millionths as digit strings (see the module docstring).
# Returns {code, used (usage + pending), pending}; code 1 granted,
#   0 refused, -1 not ready (empty or rebuilding, and nothing counted elsewhere was given),
#   -2 stale archived usage (read it again).
_RESERVE_BODY = r"""
local id, amount, limit = ARGV[1], ARGV[2], ARGV[3]
local now, lo, hi = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
local pending, exists = '0', false
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local a, at = string.match(all[j + 1], '^([^|]+)|([^|]+)')
  if all[j] == id then exists = true end
  local t = tonumber(at)
  if t >= lo and t < hi then pending = add(pending, a) end
end
local ready = redis.call('EXISTS', KEYS[3]) == 1 and redis.call('EXISTS', KEYS[4]) == 0
if not ready and ARGV[10] == '' then return {-1, '0', pending} end
local used
if ready then
  if ARGV[8] ~= '' and epoch_of(KEYS[5]) ~= ARGV[8] then return {-2, '0', '0'} end
  used = read_usage('s', ARGV, 11, ARGV[9], '0')
else
  used = ARGV[10]
end
local held = add(used, pending)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if exists or redis.call('ZSCORE', KEYS[2], id) then
  return {1, held, pending}
end
if limit == '-' or (limit ~= '' and less(limit, add(held, amount))) then
  return {0, held, pending}
end
redis.call('HSET', KEYS[1], id, amount .. '|' .. ARGV[5])
return {1, held, pending}
"""
RESERVE = _COMMON + _RESERVE_BODY


def guarded_reserve(guard_lua: str) -> str:
    """RESERVE that first asks a guard (`meterline.view.IdGuard.script`, which defines
    `guard_held`) with KEYS[6] and the id: a held id returns {-3, '0', '0'}, reserving nothing."""
    guard = "if guard_held(KEYS[6], ARGV[1]) then return {-3, '0', '0'} end\n"
    return _COMMON + guard_lua + guard + _RESERVE_BODY


# KEYS: pairs of (minute zset, minute hash), one per day. ARGV: agg, lowest minute, highest.
RECENT = (
    _COMMON
    + r"""
local agg, lo, hi = ARGV[1], ARGV[2], ARGV[3]
local spec = {}
local n = 0
for k = 1, #KEYS, 2 do
  local minutes = redis.call('ZRANGEBYSCORE', KEYS[k], lo, hi)
  spec[#spec + 1] = KEYS[k + 1]
  spec[#spec + 1] = tostring(#minutes)
  for _, m in ipairs(minutes) do spec[#spec + 1] = m end
  n = n + 1
end
table.insert(spec, 1, tostring(n))
local v = read_usage(agg, spec, 1, '', '')
return v
"""
)

# KEYS: rebuild flag, ready marker, watermark hash. ARGV: token, then (stream, offset) pairs.
FINISH_REBUILD = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], '1')
redis.call('DEL', KEYS[1])
return 1
"""
