-- Interlock's run-time upstream members ("dynamic upstreams").
--
-- nginx.conf names each HTTP upstream but lists none of its servers; the servers live in the
-- targets document (see interlock/render/targets.py for its grammar). The master loads the
-- document from <prefix>/targets when the configuration is loaded; afterwards the proxy agent
-- posts a new document to the loopback status port, so a change that only moves tasks needs
-- no reload. Every worker checks the shared serial number on each request and re-parses when it
-- moved. Balancing follows nginx: round robin, a consistent hash on a cookie or on the client
-- address, max_fails/fail_timeout, and one more try on another server (proxy_next_upstream).
local balancer = require "ngx.balancer"

local shared = ngx.shared.interlock_targets
local prefix = ngx.config.prefix()
local crc32 = ngx.crc32_long
local now = ngx.now
local var = ngx.var

local M = {}
local worker_serial = false
local upstreams = {}
local failures = {}

local function read_file(path)
    local file = io.open(path, "rb")
    if not file then
        return nil
    end
    local data = file:read("*a")
    file:close()
    return data
end

local function parse(text)
    local parsed, current, version = {}, nil, nil
    for line in string.gmatch(text, "[^\n]+") do
        local kind, rest = string.match(line, "^(%l+) (.*)$")
        if kind == "server" and current then
            local host, port, max_fails, fail_timeout = string.match(rest, "^(%S+) (%d+) (%d+) (%d+)$")
            if not host then
                return nil, "malformed server line: " .. line
            end
            local peers = current.peers
            peers[#peers + 1] = {
                host = host,
                port = tonumber(port),
                key = host .. ":" .. port,
                max_fails = tonumber(max_fails),
                fail_timeout = tonumber(fail_timeout) / 1000,
            }
        elseif kind == "upstream" then
            local name, balance, cookie = string.match(rest, "^(%S+) (%S+) (%S+)$")
            if not name then
                return nil, "malformed upstream line: " .. line
            end
            current = { balance = balance, peers = {}, rr = 0 }
            if cookie ~= "-" then
                current.cookie = "cookie_" .. cookie
            end
            parsed[name] = current
        elseif kind == "interlock" then
            version = string.match(rest, "^targets 1 (%x+)$")
        else
            return nil, "line not understood: " .. line
        end
    end
    if not version then
        return nil, "no 'interlock targets 1 ID' header"
    end
    return parsed, version
end

-- Validate and publish a document to every worker; returns its id, or nil and why not.
local function store(text)
    local parsed, version = parse(text or "")
    if not parsed then
        return nil, version
    end
    local ok, err = shared:safe_set("targets", text)
    if not ok then
        return nil, "shared dict interlock_targets: " .. err
    end
    shared:set("version", version)
    -- A number is cheaper to read on every request than the id string.
    shared:incr("serial", 1, 0)
    return version
end

-- Called from init_by_lua: the document that goes with the configuration being loaded.
function M.init()
    local text = read_file(prefix .. "targets")
    if text and text ~= "" then
        local version, err = store(text)
        if not version then
            ngx.log(ngx.ERR, "interlock: ", prefix, "targets not loaded: ", err)
        end
    end
    local token = read_file(prefix .. "control-token")
    M.token = token and string.match(token, "^%s*(%S+)%s*$")
end

local function refresh()
    local serial = shared:get("serial")
    if serial == worker_serial then
        return
    end
    local parsed = parse(shared:get("targets") or "")
    if parsed then
        local alive, start = {}, ngx.worker.pid()
        for _, upstream in pairs(parsed) do
            -- Workers start round robin at different servers, as nginx's own workers do not.
            upstream.rr = start % math.max(#upstream.peers, 1)
            for _, peer in ipairs(upstream.peers) do
                alive[peer.key] = failures[peer.key]
            end
        end
        upstreams, failures = parsed, alive
    end
    worker_serial = serial
end

local function usable(peer, tried, t)
    if tried and tried[peer.key] then
        return false
    end
    if not t then
        return true
    end
    local failure = failures[peer.key]
    return not failure or failure.down_until <= t
end

local function pick(upstream, tried)
    local peers = upstream.peers
    local count = #peers
    -- The clock is read only while some server has failed.
    local t = next(failures) ~= nil and now() or nil
    local key
    if upstream.cookie then
        key = var[upstream.cookie]
    elseif upstream.balance == "ip_hash" then
        key = var.remote_addr
    end
    if key and key ~= "" then
        -- Rendezvous hashing: a key keeps its server while that server stays, and only the
        -- keys of a server that leaves move.
        local best, best_score = nil, -1
        for i = 1, count do
            local peer = peers[i]
            if usable(peer, tried, t) then
                local score = crc32(key .. "|" .. peer.key)
                if score > best_score then
                    best, best_score = peer, score
                end
            end
        end
        if best then
            return best
        end
    else
        for _ = 1, count do
            upstream.rr = upstream.rr % count + 1
            local peer = peers[upstream.rr]
            if usable(peer, tried, t) then
                return peer
            end
        end
    end
    -- Every server is failing or tried: like nginx, try one that was not tried in this request.
    for i = 1, count do
        if not (tried and tried[peers[i].key]) then
            return peers[i]
        end
    end
    return nil
end

local function note_failure(peer)
    if peer.max_fails == 0 then
        return
    end
    local t = now()
    local failure = failures[peer.key]
    if not failure or failure.since + peer.fail_timeout <= t then
        failure = { count = 0, since = t, down_until = 0 }
        failures[peer.key] = failure
    end
    failure.count = failure.count + 1
    if failure.count >= peer.max_fails then
        failure.down_until = t + peer.fail_timeout
        ngx.log(ngx.WARN, "interlock: ", peer.key, " failed ", failure.count, " times; skipped for ",
            peer.fail_timeout, "s")
    end
end

-- The servers this request already tried, from $upstream_addr ("a:p, b:p : c:p"); read only
-- when nginx retries, because reading a variable costs more than the rest of a pick.
local function tried_peers()
    local tried, last = {}, nil
    for address in string.gmatch(var.upstream_addr or "", "[^%s,:]+:%d+") do
        tried[address] = true
        last = address
    end
    return tried, last
end

local function find_peer(peers, key)
    for i = 1, #peers do
        if peers[i].key == key then
            return peers[i]
        end
    end
    return nil
end

-- balancer_by_lua: choose the server for this try of this request. Each upstream block passes
-- its own name (reading an nginx variable here costs more than the rest of this function).
function M.balance(name)
    refresh()
    local upstream = upstreams[name]
    local peers = upstream and upstream.peers
    local count = peers and #peers or 0
    local peer
    if count == 1 then
        peer = peers[1]
    elseif count == 0 then
        -- Only a targets document that does not belong to this nginx.conf gets here; nginx
        -- answers 500 for any exit from the balancer phase.
        ngx.log(ngx.ERR, "interlock: no servers for upstream ", name)
        return ngx.exit(ngx.ERROR)
    else
        local tried
        local state = balancer.get_last_failure()
        if state then
            local last
            tried, last = tried_peers()
            local failed = state == "failed" and last and find_peer(peers, last)
            if failed then
                note_failure(failed)
            end
        else
            balancer.set_more_tries(count - 1)
        end
        peer = pick(upstream, tried)
        if not peer then
            return ngx.exit(ngx.ERROR)
        end
    end
    local ok, err = balancer.set_current_peer(peer.host, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "interlock: cannot use ", peer.key, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- content_by_lua on the loopback status port: GET answers the id of the document in use;
-- POST (with the agent's bearer token) replaces the document without a reload.
function M.control()
    if ngx.req.get_method() == "GET" then
        ngx.print(shared:get("version") or "")
        return
    end
    if not M.token or var.http_authorization ~= "Bearer " .. M.token then
        return ngx.exit(403)
    end
    ngx.req.read_body()
    local text = ngx.req.get_body_data()
    if not text then
        local path = ngx.req.get_body_file()
        text = path and read_file(path)
    end
    local version, err = store(text)
    if not version then
        ngx.status = 400
        ngx.print(err)
        return
    end
    ngx.print(version)
end

return M
