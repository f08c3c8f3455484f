-- Interlock's run-time upstream members ("dynamic upstreams").
--
-- nginx.conf names each HTTP upstream but lists none of its servers; the servers live in the
-- targets document (see interlock/render/targets.py for its grammar). When nginx loads its
-- configuration, the master reads the whole document from <prefix>/targets into the shared
-- dict, one entry per upstream under a new generation (workers of the previous configuration
-- keep reading theirs while they finish). Afterwards the proxy agent posts only the upstreams
-- that changed to the loopback status port, so a change that only moves tasks needs no reload
-- and costs in proportion to what changed. Each request reads one number, its upstream's
-- serial, and a worker re-parses an upstream only when that moved. Balancing follows nginx:
-- round robin, a consistent hash on a cookie or on the client address, max_fails and
-- fail_timeout, and one more try on another server (proxy_next_upstream).
local balancer = require "ngx.balancer"

local shared = ngx.shared.interlock_targets
local prefix = ngx.config.prefix()
local crc32 = ngx.crc32_long
local now = ngx.now
local var = ngx.var

local M = { generation = 0 }
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

local function key(kind, name)
    return kind .. M.generation .. ":" .. name
end

-- A document as { id = ID, delta = bool, blocks = { NAME = "BALANCE COOKIE\nADDRESS PORT
-- MAX_FAILS FAIL_TIMEOUT_MS\n..." }, removed = { NAME, ... } }; each line is checked here, so
-- what is stored parses.
local function split(text)
    local document = { blocks = {}, removed = {} }
    local name, lines
    for line in string.gmatch(text, "[^\n]+") do
        local kind, rest = string.match(line, "^(%l+) (.*)$")
        if kind == "server" and lines then
            if not string.match(rest, "^%S+ %d+ %d+ %d+$") then
                return nil, "malformed server line: " .. line
            end
            lines[#lines + 1] = rest
        elseif kind == "upstream" then
            local balance, cookie
            name, balance, cookie = string.match(rest, "^(%S+) (%S+) (%S+)$")
            if not name then
                return nil, "malformed upstream line: " .. line
            end
            lines = { balance .. " " .. cookie }
            document.blocks[name] = lines
        elseif kind == "remove" and string.match(rest, "^%S+$") then
            document.removed[#document.removed + 1] = rest
            lines = nil
        elseif kind == "interlock" and not document.id then
            local id, delta = string.match(rest, "^targets 1 (%x+)( ?%l*)$")
            if not id or (delta ~= "" and delta ~= " delta") then
                return nil, "malformed header: " .. line
            end
            document.id, document.delta = id, delta ~= ""
        else
            return nil, "line not understood: " .. line
        end
    end
    if not document.id then
        return nil, "no 'interlock targets 1 ID' header"
    end
    for block_name, block in pairs(document.blocks) do
        document.blocks[block_name] = table.concat(block, "\n")
    end
    return document
end

-- Store the upstreams of `document` (every one for a whole document, the changed and removed
-- ones for a delta) in the current generation; returns the document id, or nil and why not.
local function store(document)
    for name, block in pairs(document.blocks) do
        local ok, err = shared:safe_set(key("u", name), block)
        if not ok then
            return nil, "shared dict interlock_targets: " .. err
        end
        shared:incr(key("s", name), 1, 0)
    end
    for _, name in ipairs(document.removed) do
        shared:delete(key("u", name))
        shared:incr(key("s", name), 1, 0)
    end
    shared:set(key("v", "version"), document.id)
    return document.id
end

-- Called from init_by_lua (in the master, at start and at every reload): the document that
-- goes with the configuration being loaded, in a new generation; entries two generations old
-- belong to workers that are gone.
function M.init()
    M.generation = shared:incr("generation", 1, 0)
    local stale = M.generation - 2
    for _, entry in ipairs(shared:get_keys(0)) do
        local generation = tonumber(string.match(entry, "^%a(%d+):"))
        if generation and generation <= stale then
            shared:delete(entry)
        end
    end
    local text = read_file(prefix .. "targets")
    if text and text ~= "" then
        local document, err = split(text)
        local stored
        if document and not document.delta then
            stored, err = store(document)
        end
        if not stored then
            ngx.log(ngx.ERR, "interlock: ", prefix, "targets not loaded: ", err or "a delta is not a document")
        end
    end
    local token = read_file(prefix .. "control-token")
    M.token = token and string.match(token, "^%s*(%S+)%s*$")
end

-- The worker's parsed copy of one upstream, read again from the shared dict when its serial
-- moved; nil when the document has no such upstream.
local function load(name, serial_key, serial)
    local block = shared:get(key("u", name))
    if not block then
        upstreams[name] = nil
        return nil
    end
    local balance, cookie = string.match(block, "^(%S+) (%S+)")
    local upstream = { balance = balance, peers = {}, serial = serial, serial_key = serial_key }
    if cookie ~= "-" then
        upstream.cookie = "cookie_" .. cookie
    end
    local peers = upstream.peers
    for host, port, max_fails, fail_timeout in string.gmatch(block, "\n(%S+) (%d+) (%d+) (%d+)") do
        peers[#peers + 1] = {
            host = host,
            port = tonumber(port),
            key = host .. ":" .. port,
            max_fails = tonumber(max_fails),
            fail_timeout = tonumber(fail_timeout) / 1000,
        }
    end
    -- Workers start round robin at different servers.
    upstream.rr = ngx.worker.pid() % math.max(#peers, 1)
    upstreams[name] = upstream
    return upstream
end

local function current(name)
    local upstream = upstreams[name]
    local serial_key = upstream and upstream.serial_key or key("s", name)
    local serial = shared:get(serial_key)
    if upstream and upstream.serial == serial then
        return upstream
    end
    return load(name, serial_key, serial)
end

local function usable(peer, tried, t)
    if tried and tried[peer.key] then
        return false
    end
    if not t then
        return true
    end
    local failure = failures[peer.key]
    if failure and failure.since + peer.fail_timeout <= t and failure.down_until <= t then
        failures[peer.key] = nil -- its window is over: forget it
        return true
    end
    return not failure or failure.down_until <= t
end

local function pick(upstream, tried)
    local peers = upstream.peers
    local count = #peers
    -- The clock is read only while some server has failed.
    local t = next(failures) ~= nil and now() or nil
    local hash_key
    if upstream.cookie then
        hash_key = var[upstream.cookie]
    elseif upstream.balance == "ip_hash" then
        hash_key = var.remote_addr
    end
    if hash_key and hash_key ~= "" then
        -- Rendezvous hashing: a key keeps its server while that server stays, and only the
        -- keys of a server that leaves move.
        local best, best_score = nil, -1
        for i = 1, count do
            local peer = peers[i]
            if usable(peer, tried, t) then
                local score = crc32(hash_key .. "|" .. peer.key)
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
    local upstream = current(name)
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

-- content_by_lua on the loopback status port: GET answers the id of the document in use; POST
-- (with the agent's bearer token) applies a delta (changed and removed upstreams) without a
-- reload and answers the new id.
function M.control()
    if ngx.req.get_method() == "GET" then
        ngx.print(shared:get(key("v", "version")) or "")
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
    local document, err = split(text or "")
    local id
    if document and document.delta then
        id, err = store(document)
    elseif document then
        err = "expected a delta ('interlock targets 1 ID delta')"
    end
    if not id then
        ngx.status = 400
        ngx.print(err)
        return
    end
    ngx.print(id)
end

return M
