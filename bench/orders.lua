-- POST /api/orders, each request as the next buyer (whose cart was filled
-- beforehand), so every request places a real order. TOKENS_FILE lists one
-- bearer token per line; the threads take interleaved slices of it.
local tokens = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  thread:set("thread_count_hint", 0)
end

function init(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    tokens[#tokens + 1] = line
  end
  threads = tonumber(os.getenv("WRK_THREADS") or "2")
  counter = 0
  exhausted = 0
end

function request()
  local index = counter * threads + thread_id + 1
  counter = counter + 1
  if index > #tokens then
    exhausted = exhausted + 1
    index = ((index - 1) % #tokens) + 1
  end
  return wrk.format("POST", "/api/orders", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[index],
  }, '{"shipping_address": "1 Benchmark Road, Testville"}')
end
