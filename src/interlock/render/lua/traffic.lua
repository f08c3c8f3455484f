-- Interlock's request counters (`TrafficMetrics`): what the proxy agent serves as per-route
-- metrics.
--
-- Each request is counted in its worker's own Lua table (no lock, no system call): by host,
-- upstream, the address of the task that answered ("*" where one service serves the upstream,
-- so that the address need not be read) and status class, with the bytes sent,
-- the failed tries and the retries, and its duration in a histogram by server name and
-- upstream. Once a second, and when the worker exits (a reload), a worker adds its counts to the
-- shared dict, which outlives reloads; the agent reads the totals from the status port
-- (GET /interlock/traffic: one "key<TAB>value" line each). Server names and upstream names are
-- Interlock's, so the number of keys is bounded by the routing, not by clients.
local shared = ngx.shared.interlock_traffic
local var = ngx.var
local sub, byte, gmatch, floor = string.sub, string.byte, string.gmatch, math.floor
local now, start_time = ngx.now, ngx.req.start_time
local BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local BUCKETS = #BOUNDS + 1

local M = {}
local counts = {}
local durations = {}

local function last_try(addresses)
    -- "A, B" (a retry) or "A : B" (an internal redirect): the last one answered. An IPv6 task
    -- is "[addr]:port", so a lone colon, not any colon, separates redirects.
    local last = addresses
    for address in gmatch(addresses, "[^, ]+") do
        if address ~= ":" then
            last = address
        end
    end
    return last
end

function M.log()
    -- "HOST<TAB>UPSTREAM<TAB>*" where one service serves the location, "HOST<TAB>UPSTREAM" where
    -- several do (then the task's address tells which); set by each location that proxies,
    -- unset for the proxy's own answers (a host no service routes, a redirect).
    -- With run-time routing the router leaves it in ngx.ctx (cheaper than a variable), or in
    -- the variable after a jump to a named location.
    local route = ngx.ctx.interlock_route or var.interlock_route
    if route == nil or route == "" then
        route = var.server_name .. "\t-\t*"
    end
    local failed, retries = 0, 0
    local statuses = var.upstream_status
    if statuses and (#statuses > 3 or byte(statuses, 1) == 53) then -- several tries, or a 5xx
        local tries = 0
        for status in gmatch(statuses, "%d+") do
            tries = tries + 1
            if status == "502" or status == "503" or status == "504" then
                failed = failed + 1
            end
        end
        retries = tries > 0 and tries - 1 or 0
    end
    local by_task = route
    if byte(route, -1) ~= 42 then -- no "*": name the task that answered
        local addresses = var.upstream_addr or "-"
        if retries > 0 then
            addresses = last_try(addresses)
        end
        by_task = route .. "\t" .. addresses
    end
    local classes = counts[by_task]
    if classes == nil then
        classes = {}
        counts[by_task] = classes
    end
    local class = floor(ngx.status / 100)
    local count = classes[class]
    if count == nil then
        count = { 0, 0, 0, 0 }
        classes[class] = count
    end
    count[1] = count[1] + 1
    count[2] = count[2] + (tonumber(var.bytes_sent) or 0)
    count[3] = count[3] + failed
    count[4] = count[4] + retries
    local seconds = now() - start_time()
    local histogram = durations[route]
    if histogram == nil then
        histogram = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
        durations[route] = histogram
    end
    local bucket = BUCKETS
    for index = 1, BUCKETS - 1 do
        if seconds <= BOUNDS[index] then
            bucket = index
            break
        end
    end
    histogram[bucket] = histogram[bucket] + 1
    histogram[BUCKETS + 1] = histogram[BUCKETS + 1] + seconds
end

local function flush(premature)
    -- Called each second, and once more (premature) when the worker exits.
    local pending_counts, pending_durations = counts, durations
    counts, durations = {}, {}
    for by_task, classes in pairs(pending_counts) do
        for class, count in pairs(classes) do
            local key = by_task .. "\t" .. class
            shared:incr(key .. "\tn", count[1], 0)
            shared:incr(key .. "\tb", count[2], 0)
            if count[3] > 0 then
                shared:incr(key .. "\te", count[3], 0)
            end
            if count[4] > 0 then
                shared:incr(key .. "\tr", count[4], 0)
            end
        end
    end
    for route, histogram in pairs(pending_durations) do
        -- The histogram is the route's, whichever task answered.
        if byte(route, -1) == 42 then
            route = sub(route, 1, -3)
        end
        for index = 1, BUCKETS do
            if histogram[index] > 0 then
                shared:incr(route .. "\th" .. index, histogram[index], 0)
            end
        end
        shared:incr(route .. "\ts", histogram[BUCKETS + 1], 0)
    end
end

function M.start()
    local ok, err = ngx.timer.every(1, flush)
    if not ok then
        ngx.log(ngx.ERR, "interlock: no traffic timer: ", err)
    end
end

function M.dump()
    local keys = shared:get_keys(0)
    local lines = {}
    for index = 1, #keys do
        local value = shared:get(keys[index])
        if value then
            lines[#lines + 1] = keys[index] .. "\t" .. value
        end
    end
    ngx.header.content_type = "text/plain"
    ngx.print(table.concat(lines, "\n"), "\n")
end

return M
