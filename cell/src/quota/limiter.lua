-- One decision on a tenant's limiter state, atomically: a consume key seen
-- before answers its first outcome; otherwise GCRA (RATE), a counter per
-- window (PERIODIC) or a level (GAUGE), recorded unless dry.
-- KEYS: slot hash, consume key. ARGV: kind (0 rate, 1 periodic, 2 gauge,
-- 3 gauge release), limit, burst, soft, amount, now µs, window start,
-- window end, dry, has key, key ttl seconds, request fingerprint.
-- Returns {allowed, limit, remaining, reset_at|-1, retry_after|-1, overage,
-- used, replay (1) or conflict (2)}.
-- A consume key holds "fingerprint|outcome": the same key with another
-- fingerprint (metric, amount, operation) is a conflict.
local function encode(r)
  local parts = {}
  for i = 1, 7 do parts[i] = string.format('%d', r[i]) end
  return ARGV[12] .. '|' .. table.concat(parts, ',')
end
if ARGV[10] == '1' then
  local prev = redis.call('GET', KEYS[2])
  if prev then
    local sep = string.find(prev, '|', 1, true)
    if (not sep) or string.sub(prev, 1, sep - 1) ~= ARGV[12] then
      return {0, 0, 0, -1, -1, 0, 0, 2}
    end
    local r = {}
    for v in string.gmatch(string.sub(prev, sep + 1), '[^,]+') do r[#r + 1] = tonumber(v) end
    r[8] = 1
    return r
  end
end
local kind = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local soft = ARGV[4] == '1'
local amount = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local dry = ARGV[9] == '1'
local s = redis.call('HMGET', KEYS[1], 'at', 'used')
local at = tonumber(s[1]) or 0
local used = math.max(tonumber(s[2]) or 0, 0)
local res
if kind == 3 then
  used = math.max(used - amount, 0)
  if not dry then
    redis.call('HSET', KEYS[1], 'at', string.format('%d', at), 'used', string.format('%d', used))
  end
  res = {1, limit, math.max(limit - used, 0), -1, -1, 0, used}
elseif kind == 0 then
  if limit <= 0 then
    local o = 0
    if soft then o = amount end
    res = {soft and 1 or 0, 0, 0, -1, -1, o, 0}
  else
    local interval = math.max(math.floor(1000000 / limit), 1)
    local tol = interval * burst
    local tat = math.max(at, now)
    local new_tat = tat + interval * amount
    local over = new_tat - now > tol
    local allowed = (not over) or soft
    local overage = 0
    if over and allowed then
      overage = math.min(math.floor((new_tat - now - tol + interval - 1) / interval), amount)
    end
    local held = tat
    if allowed then held = new_tat end
    if allowed and not dry then
      redis.call('HSET', KEYS[1], 'at', string.format('%d', new_tat))
      redis.call('PEXPIRE', KEYS[1], math.floor((new_tat - now) / 1000) + 1000)
    end
    local remaining = math.min(math.max(math.floor((now + tol - held) / interval), 0), burst)
    local retry = -1
    if not allowed then retry = new_tat - tol - now end
    res = {allowed and 1 or 0, limit, remaining, math.max(held, now), retry, overage, burst - remaining}
  end
else
  local wend = -1
  if kind == 1 then
    local ws = tonumber(ARGV[7])
    wend = tonumber(ARGV[8])
    if at ~= ws then at = ws; used = 0 end
  end
  local after = used + amount
  local over = after > limit
  local allowed = (not over) or soft
  local overage = 0
  if over and allowed then overage = math.min(after - limit, amount) end
  if allowed and not dry then
    redis.call('HSET', KEYS[1], 'at', string.format('%d', at), 'used', string.format('%d', after))
    if kind == 1 then
      redis.call('PEXPIRE', KEYS[1], math.floor((wend - now) / 1000) + 60000)
    end
  end
  local u = used
  if allowed then u = after end
  local retry = -1
  if (not allowed) and wend >= 0 then retry = wend - now end
  res = {allowed and 1 or 0, limit, math.max(limit - u, 0), wend, retry, overage, u}
end
if ARGV[10] == '1' and not dry then
  redis.call('SET', KEYS[2], encode(res), 'EX', tonumber(ARGV[11]))
end
res[8] = 0
return res
