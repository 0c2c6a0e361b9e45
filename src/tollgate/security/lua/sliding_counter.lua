-- One request against a sliding-window counter, in one round trip.
-- KEYS[1]: the counter of the window now running, KEYS[2]: the counter of the window before it.
-- ARGV: limit, window length (s), seconds elapsed in the running window, amount.
-- The requests "in the last window" are estimated as the previous window's count, weighted by
-- the share of it still inside the last window, plus the running window's count.
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local running = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = tonumber(redis.call('GET', KEYS[2]) or '0')
local used = before * (window - elapsed) / window + running
if used + amount > limit then
  return {0, tostring(used), running, before}
end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], window * 2)
return {1, tostring(used + amount), running + amount, before}
