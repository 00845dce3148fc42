"""The Redis store's Lua scripts: Redis runs each one atomically, so a check and what it
decides (a reservation; a batch of settlements) are one step for every router replica.

They mirror `stores.base.rate_refusal` and `day_refusal`; the Python side re-derives a
refusal from the figures a script returns, so the messages are built in one place.
"""

# KEYS: requests/min zset, today's day hash, the new reservation's hash.
# ARGV: now, tokens, cost, requests_per_min, server_tokens_per_day, cost_usd_per_day ('' = no limit),
#       reservation id, day-key TTL (s), rate window (s).
# Returns {'ok'} | {'requests_per_min', count, oldest score} | {'day', spent tokens, spent cost, reserved tokens, reserved cost}.
RESERVE = """
local now, tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, max_tokens, max_cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local window = tonumber(ARGV[9])
if rpm then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'requests_per_min', tostring(count), oldest[2]}
  end
end
local d = redis.call('HMGET', KEYS[2], 'server_tokens', 'cost_usd', 'reserved_tokens', 'reserved_cost')
local st, sc, rt, rc = tonumber(d[1] or 0), tonumber(d[2] or 0), tonumber(d[3] or 0), tonumber(d[4] or 0)
if (max_tokens and tokens > 0 and st + rt + tokens > max_tokens) or (max_cost and cost > 0 and sc + rc + cost > max_cost) then
  return {'day', d[1] or '0', d[2] or '0', d[3] or '0', d[4] or '0'}
end
if rpm then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[7])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
end
if tokens > 0 or cost > 0 then
  redis.call('HINCRBY', KEYS[2], 'reserved_tokens', ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[2], 'reserved_cost', ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
  redis.call('HSET', KEYS[3], 'server_tokens', ARGV[2], 'cost_usd', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
return {'ok'}
"""

# KEYS: per settlement: its reservation's hash, the reservation's day hash, today's day hash,
#       the label's totals hash (on a cluster the store sends only settlements of one slot).
# ARGV: day-key TTL (s), settled-marker TTL (s), then per settlement: '1' if it has a reservation
#       else '0', requests, server_tokens, client_tokens, cost_usd, baseline_cost_usd, saving_usd.
# A reservation hash that is gone (expired) releases nothing. Settling one leaves a marker in its
# place, so a settlement tried again (a retried batch) is applied once.
SETTLE = """
local ttl, settled_ttl = ARGV[1], ARGV[2]
for i = 0, #KEYS / 4 - 1 do
  local res, res_day, today, total = KEYS[1 + 4 * i], KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i]
  local a = 3 + 7 * i
  local apply = true
  if ARGV[a] == '1' then
    local held = redis.call('HMGET', res, 'server_tokens', 'cost_usd', 'settled')
    if held[3] then
      apply = false
    else
      if held[1] then
        redis.call('HINCRBY', res_day, 'reserved_tokens', 0 - tonumber(held[1]))  -- 0 - x: never '-0', which HINCRBY rejects
        redis.call('HINCRBYFLOAT', res_day, 'reserved_cost', 0 - tonumber(held[2]))
        redis.call('EXPIRE', res_day, ttl)
        redis.call('DEL', res)
      end
      redis.call('HSET', res, 'settled', '1')
      redis.call('EXPIRE', res, settled_ttl)
    end
  end
  if apply then
    redis.call('HINCRBY', today, 'server_tokens', ARGV[a + 2])
    redis.call('HINCRBYFLOAT', today, 'cost_usd', ARGV[a + 4])
    redis.call('EXPIRE', today, ttl)
    redis.call('HINCRBY', total, 'requests', ARGV[a + 1])
    redis.call('HINCRBY', total, 'server_tokens', ARGV[a + 2])
    redis.call('HINCRBY', total, 'client_tokens', ARGV[a + 3])
    redis.call('HINCRBYFLOAT', total, 'cost_usd', ARGV[a + 4])
    redis.call('HINCRBYFLOAT', total, 'baseline_cost_usd', ARGV[a + 5])
    redis.call('HINCRBYFLOAT', total, 'saving_usd', ARGV[a + 6])
  end
end
return #KEYS
"""
