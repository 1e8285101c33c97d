-- wrk script: every request asks for a URI no earlier request asked for (a new query
-- string on "/"), so on a cached route every request is a cache miss that is stored.
-- The prefix is the start time, so the warm-up run's keys never come back.
local prefix = tostring(os.time())
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/?m=" .. prefix .. "-" .. n)
end
