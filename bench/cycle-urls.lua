-- wrk script: cycle through a list of request targets (path + query), one per line, so the
-- server cannot serve every request from a single hot object.
-- Usage: wrk ... -s cycle-urls.lua http://HOST:PORT -- FILE
local requests = {}
local next_index = 1
local thread_count = 0

-- Runs in wrk's main Lua state, once per thread: give each thread an id (a global in the
-- thread's own state) so threads start at different places in the list.
function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local file = args[1] or error("usage: wrk -s cycle-urls.lua URL -- FILE")
  for line in io.lines(file) do
    if line ~= "" then
      -- Formatted once here: building the request per call would cost wrk CPU we would
      -- rather leave to the measurement.
      requests[#requests + 1] = wrk.format("GET", line)
    end
  end
  if #requests == 0 then error("no URLs in " .. file) end
  -- Each wrk thread has its own Lua state; spread their starting points over the list.
  next_index = id * 7919 % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
