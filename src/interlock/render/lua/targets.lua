-- Interlock's run-time routing: hosts, routes and upstream members that change without a reload.
--
-- With run-time routing nginx.conf holds only listeners and global settings, and one
-- catch-all server per listener whose access phase calls `route`; with dynamic upstreams
-- nginx.conf names each HTTP upstream but lists none of its servers. What nginx.conf leaves out
-- lives in the targets document (see interlock/render/targets.py for its grammar). When nginx
-- loads its configuration, the master reads the whole document from <prefix>/targets into the
-- shared dict, one entry per upstream and per host under a new generation (workers of the
-- previous configuration keep reading theirs while they finish). Afterwards the proxy agent
-- posts only the blocks that changed to the loopback status port, so a routing change needs no
-- reload and costs in proportion to what changed. Each request reads one number from the
-- shared dict, the document's version; a worker reads a block again only when the version
-- moved, and parses it again only when its text changed. Balancing follows nginx:
-- round robin, a consistent hash on a cookie or on the client address, max_fails and
-- fail_timeout, and one more try on another server (proxy_next_upstream). A service's policy
-- (its upstream block's "!" lines) is applied once its route is chosen: `police`, `respond`.
local balancer = require "ngx.balancer"
local bit = require "bit"
local ffi = require "ffi"

-- pcall: a second load of this library in one Lua VM must not fail on the declaration.
pcall(ffi.cdef, [[int inet_pton(int af, const char *src, void *dst);]])

local shared = ngx.shared.interlock_targets
local prefix = ngx.config.prefix()
local crc32 = ngx.crc32_long
local now = ngx.now
local var = ngx.var

local M = {
    generation = 0,
    unknown_host_status = 503,
    https_port_suffix = "",
    log_names = false,
    default_retries = 1, -- ProxyNextUpstreamTries - 1: retries where no policy says
    connect_tries = 6, -- CONNECT_TRIES: the tasks a request tries while tries fail at connect
}
local upstreams = {}
local hosts = {}
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

-- The policy lines of an upstream block (after its servers) and what each must look like.
local POLICY_LINES = {
    auth = "^[%w._:%[%]-]+ [%w+/=]+$",
    fauth = "^[%w._:%[%]-]+ [%w._:-]+ [%w+/=]+ [%w,-]+ [%w,-]+$",
    allow = "^[%x.:/,]+$",
    rate = "^%d+ %d+ %d+$",
    reqh = "^%a[%w-]* [%w+/=-]+$",
    resh = "^%a[%w-]* [%w+/=-]+$",
    cors = "^[%w.:/*,-]+$",
    retries = "^%d$",
}

local function key(kind, name)
    return kind .. M.generation .. ":" .. name
end

-- A document as { id = ID, delta = bool, upstreams = { NAME = "BALANCE COOKIE SERVICES\nADDRESS
-- PORT MAX_FAILS FAIL_TIMEOUT_MS\n..." }, hosts = { NAME = "TLS SSL_ONLY\nredirect ...\nroute
-- ..." }, removed = { NAME, ... } (upstreams), dropped = { NAME, ... } (hosts) }; each line is
-- checked here, so what is stored parses.
local function split(text)
    local document = { upstreams = {}, hosts = {}, removed = {}, dropped = {} }
    local lines, block_kind
    for line in string.gmatch(text, "[^\n]+") do
        local kind, rest = string.match(line, "^(%l+) (.*)$")
        if kind == "server" and block_kind == "upstream" then
            if not string.match(rest, "^%S+ %d+ %d+ %d+$") then
                return nil, "malformed server line: " .. line
            end
            lines[#lines + 1] = rest
        elseif POLICY_LINES[kind] and block_kind == "upstream" then
            if not string.match(rest, POLICY_LINES[kind]) then
                return nil, "malformed " .. kind .. " line: " .. line
            end
            lines[#lines + 1] = "!" .. line -- marked, so no server pattern reads it
        elseif (kind == "route" or kind == "redirect") and block_kind == "host" then
            if not (string.match(rest, "^/%S* %S+ %l[%l-]* [%l-]+$") or string.match(rest, "^https? %S+$")) then
                return nil, "malformed " .. kind .. " line: " .. line
            end
            lines[#lines + 1] = line
        elseif kind == "upstream" then
            local name, balance, cookie, services = string.match(rest, "^(%S+) (%S+) (%S+) (%S+)$")
            if not name then
                return nil, "malformed upstream line: " .. line
            end
            lines, block_kind = { balance .. " " .. cookie .. " " .. services }, kind
            document.upstreams[name] = lines
        elseif kind == "host" then
            local name, tls, ssl_only = string.match(rest, "^(%S+) ([01]) ([01])$")
            if not name then
                return nil, "malformed host line: " .. line
            end
            lines, block_kind = { tls .. " " .. ssl_only }, kind
            document.hosts[name] = lines
        elseif (kind == "remove" or kind == "drop") and string.match(rest, "^%S+$") then
            local list = kind == "remove" and document.removed or document.dropped
            list[#list + 1] = rest
            lines, block_kind = nil, nil
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
    for _, blocks in ipairs({ document.upstreams, document.hosts }) do
        for block_name, block in pairs(blocks) do
            blocks[block_name] = table.concat(block, "\n")
        end
    end
    return document
end

-- Store `document` (every block for a whole document, the changed and removed ones for a
-- delta) in the current generation; returns the document id, or nil and why not. Upstreams
-- first, then hosts, then what is gone, the version last: a worker that reads a block it has
-- not cached while this runs finds the upstreams of any host it reads.
local function store(document)
    for _, kind in ipairs({ "u", "h" }) do
        for name, block in pairs(kind == "u" and document.upstreams or document.hosts) do
            local ok, err = shared:safe_set(key(kind, name), block)
            if not ok then
                return nil, "shared dict interlock_targets: " .. err
            end
        end
    end
    for _, name in ipairs(document.dropped) do
        shared:delete(key("h", name))
    end
    for _, name in ipairs(document.removed) do
        shared:delete(key("u", name))
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

-- The worker's parsed copies of blocks, checked against the document's version: a request
-- reads one number (the version, in `refresh`); a block is read again from the shared dict
-- only after the version moved, and parsed again only when its text changed. Only blocks that
-- exist are kept, so that Host headers no host has cost no memory.
local version_key
local seen_version
local versions_seen = 0

local function refresh()
    version_key = version_key or key("v", "version")
    local version = shared:get(version_key)
    if version ~= seen_version then
        seen_version = version
        versions_seen = versions_seen + 1
        -- A host or upstream removed stays cached until someone asks for it again: now and
        -- then the caches start afresh (refilled block by block on demand), so a worker that
        -- lives through much churn does not keep every block it ever parsed.
        if versions_seen % 64 == 0 then
            upstreams, hosts = {}, {}
        end
    end
end

local function cached(cache, kind, name, parse)
    local entry = cache[name]
    if entry and entry.version == seen_version then
        return entry.value
    end
    local block = shared:get(key(kind, name))
    if not block then
        cache[name] = nil
        return nil
    end
    if entry and entry.block == block then
        entry.version = seen_version
        return entry.value
    end
    local value = parse(name, block)
    cache[name] = { version = seen_version, block = block, value = value }
    return value
end

-- "10.0.0.0/8" -> { bytes = the network's address (4 or 16 bytes), bits = 8 }, or nil.
local address_buffer = ffi.new("unsigned char[16]")
local function parse_network(text)
    local address, bits = string.match(text, "^([^/]+)/(%d+)$")
    if not address then
        return nil
    end
    local v6 = string.find(address, ":", 1, true) ~= nil
    if ffi.C.inet_pton(v6 and 10 or 2, address, address_buffer) ~= 1 then
        return nil
    end
    return { bytes = ffi.string(address_buffer, v6 and 16 or 4), bits = tonumber(bits) }
end

local function in_network(binary, network)
    local bytes = network.bytes
    if #binary ~= #bytes then
        return false
    end
    local whole, rest = math.floor(network.bits / 8), network.bits % 8
    if whole > 0 and string.sub(binary, 1, whole) ~= string.sub(bytes, 1, whole) then
        return false
    end
    if rest == 0 then
        return true
    end
    local mask = 256 - 2 ^ (8 - rest)
    return bit.band(string.byte(binary, whole + 1), mask) == bit.band(string.byte(bytes, whole + 1), mask)
end

local function headers_of(value)
    return value ~= "-" and ngx.decode_base64(value) or false -- false: remove the header
end

-- The "!"-marked policy lines of an upstream block.
local function parse_policy(block)
    local policy = { request = {}, response = {} }
    local secret, realm = string.match(block, "\n!auth (%S+) (%S+)")
    if secret then
        policy.auth = secret
        policy.challenge = 'Basic realm="' .. ngx.decode_base64(realm) .. '", charset="UTF-8"'
    end
    local upstream, host, path, sent, taken = string.match(block, "\n!fauth (%S+) (%S+) (%S+) (%S+) (%S+)")
    if upstream then
        local auth = { upstream = upstream, host = host, path = ngx.decode_base64(path), sent = {}, taken = {} }
        for name in string.gmatch(sent, "[^,-][^,]*") do
            auth.sent[string.lower(name)] = true
        end
        for name in string.gmatch(taken, "[^,-][^,]*") do
            auth.taken[#auth.taken + 1] = name
        end
        policy.forward_auth = auth
    end
    local allow = string.match(block, "\n!allow (%S+)")
    if allow then
        policy.allow = {}
        for text in string.gmatch(allow, "[^,]+") do
            policy.allow[#policy.allow + 1] = parse_network(text)
        end
    end
    local count, seconds, burst = string.match(block, "\n!rate (%d+) (%d+) (%d+)")
    if count then
        policy.rate = { count = tonumber(count), seconds = tonumber(seconds), burst = tonumber(burst) }
    end
    for name, value in string.gmatch(block, "\n!reqh (%S+) (%S+)") do
        policy.request[#policy.request + 1] = { name, headers_of(value) }
    end
    for name, value in string.gmatch(block, "\n!resh (%S+) (%S+)") do
        policy.response[#policy.response + 1] = { name, headers_of(value) }
    end
    policy.retries = tonumber(string.match(block, "\n!retries (%d+)"))
    local cors = string.match(block, "\n!cors (%S+)")
    if cors then
        policy.cors = {}
        for origin in string.gmatch(cors, "[^,]+") do
            policy.cors[origin] = true
        end
    end
    return policy
end

local function parse_upstream(name, block)
    local balance, cookie, services = string.match(block, "^(%S+) (%S+) (%S+)")
    local upstream = { name = name, balance = balance, peers = {}, services = services }
    if cookie ~= "-" then
        upstream.cookie = "cookie_" .. cookie
    end
    local peers = upstream.peers
    for host, port, max_fails, fail_timeout in string.gmatch(block, "\n([^!%s]%S*) (%d+) (%d+) (%d+)") do
        if string.find(host, ":", 1, true) and string.byte(host, 1) ~= 91 then
            host = "[" .. host .. "]" -- IPv6: nginx reads an unbracketed one's last group as the port
        end
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
    if string.find(block, "\n!", 1, true) then
        upstream.policy = parse_policy(block)
    end
    return upstream
end

local function by_length(a, b)
    return #a.path > #b.path
end

local function parse_host(name, block)
    local tls, ssl_only = string.match(block, "^(%d) (%d)")
    local host = {
        name = name,
        tls = tls == "1",
        ssl_only = ssl_only == "1",
        redirect = {},
        routes = {},
        -- What the counters count this host's own answers under (redirects, 404).
        count = name .. "\t-\t*",
    }
    for scheme, target in string.gmatch(block, "\nredirect (%S+) (%S+)") do
        host.redirect[scheme] = host.redirect[scheme] or target
    end
    local routes = host.routes
    for path, upstream, protocol, flags in string.gmatch(block, "\nroute (%S+) (%S+) (%S+) (%S+)") do
        routes[#routes + 1] = {
            path = path,
            prefix = path == "/" and "/" or path .. "/",
            upstream = upstream,
            protocol = protocol,
            rewrite = string.find(flags, "r", 1, true) ~= nil,
            websocket = string.find(flags, "w", 1, true) ~= nil,
            count = name .. "\t" .. upstream .. (string.find(flags, "o", 1, true) and "\t*" or ""),
        }
    end
    -- Longest first: the route nginx's own prefix locations would choose.
    table.sort(routes, by_length)
    if #routes == 1 and routes[1].path == "/" then
        host.only = routes[1] -- no need to read the URI
    end
    return host
end

local function current(name)
    refresh()
    return cached(upstreams, "u", name, parse_upstream)
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

-- The servers this request already tried, from $upstream_addr ("a:p, [v6]:p : c:p": a comma
-- between tries, a lone colon across an internal redirect; an IPv6 task bracketed, as the
-- peers' keys are); read only when nginx retries, because reading a variable costs more than
-- the rest of a pick.
local function tried_peers()
    local tried, last, n = {}, nil, 0
    for address in string.gmatch(var.upstream_addr or "", "[^%s,]+") do
        if address ~= ":" then
            if not tried[address] then
                n = n + 1
            end
            tried[address] = true
            last = address
        end
    end
    return tried, last, n
end

-- Whether the try that just failed never connected to its task (refused, unreachable, or the
-- connect timed out): $upstream_connect_time is "-" for it. The try being chosen now is not in
-- the variable yet (nginx prints a lone colon for it).
local function never_connected()
    local last
    for time in string.gmatch(var.upstream_connect_time or "", "[^%s,]+") do
        if time ~= ":" then
            last = time
        end
    end
    return last == "-"
end

local function find_peer(peers, key)
    for i = 1, #peers do
        if peers[i].key == key then
            return peers[i]
        end
    end
    return nil
end

local function balance_with(upstream, name)
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
            local last, n_tried
            tried, last, n_tried = tried_peers()
            local failed = state == "failed" and last and find_peer(peers, last)
            if failed then
                note_failure(failed)
                -- A try that reached no task is not a retry of the request: it gives its try
                -- back while some task is untried (a task Swarm runs that this node cannot
                -- reach yet, or one just gone), up to connect_tries tasks (each may cost the
                -- connect timeout). Any method: nothing was sent.
                if n_tried < count and n_tried < M.connect_tries and never_connected() then
                    balancer.set_more_tries(1)
                end
            end
        else
            -- Another task for each retry, as many as the route's policy (or the default) allows.
            local policy = upstream.policy
            local retries = policy and policy.retries or M.default_retries
            balancer.set_more_tries(math.min(count - 1, retries))
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

-- balancer_by_lua of an upstream block of nginx.conf (dynamic upstreams): choose the server
-- for this try of this request. Each upstream block passes its own name (reading an nginx
-- variable here costs more than the rest of this function).
function M.balance(name)
    return balance_with(current(name), name)
end

-- balancer_by_lua of the one upstream block of run-time routing: the upstream `route` chose
-- (kept in ngx.ctx, so every try of a request uses the table it was routed with), or after a
-- jump to a named location, which empties ngx.ctx, the one it named in a variable.
function M.balance_routed()
    local upstream = ngx.ctx.interlock_upstream
    if upstream then
        return balance_with(upstream, upstream.name)
    end
    local name = var.interlock_upstream or ""
    return balance_with(current(name), name)
end

-- Named locations for every protocol to the task but plain HTTP (`location /` itself): HTTPS,
-- verifying the task's certificate or not, and gRPC.
local JUMPS = {
    https = "@interlock_https",
    ["https-verify"] = "@interlock_https_verify",
    grpc = "@interlock_grpc",
    grpcs = "@interlock_grpcs",
    ["grpcs-verify"] = "@interlock_grpcs_verify",
}

-- An answer of the proxy's own (a redirect, a 404, an unknown host): counted under `count`
-- (nil: the unknown host), logged with no service.
local function answered_here(ctx, count)
    ctx.interlock_route = count
    if M.log_names then
        var.interlock_service = "-"
    end
end

local limits = ngx.shared.interlock_limits
local FORWARD_AUTH_URI = "/_interlock/forward_auth"
-- Headers that frame the auth service's answer, which nginx sets itself for the client's.
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true, ["keep-alive"] = true }

-- Ask the route's auth service (a subrequest to FORWARD_AUTH_URI, answered by the tasks of its
-- upstream): a 2xx answer lets the request through, with the answer's TAKEN headers set on it
-- (a client's own of those names removed either way); any other answer is the client's.
local function forward_auth(auth, ctx)
    local upstream = cached(upstreams, "u", auth.upstream, parse_upstream)
    if not upstream then
        ngx.log(ngx.ERR, "interlock: forward_auth to unknown upstream ", auth.upstream)
        return ngx.exit(503)
    end
    local answer = ngx.location.capture(FORWARD_AUTH_URI, {
        method = ngx.HTTP_GET,
        ctx = {
            interlock_upstream = upstream,
            interlock_forward_auth = auth,
            interlock_asked = { ngx.req.get_method(), var.request_uri, var.host, var.scheme, var.remote_addr },
        },
    })
    local taken = auth.taken
    for i = 1, #taken do
        ngx.req.clear_header(taken[i])
    end
    local status = answer.status
    if status >= 200 and status < 300 and not answer.truncated then
        for i = 1, #taken do
            local value = answer.header[taken[i]]
            if value then
                ngx.req.set_header(taken[i], value)
            end
        end
        return
    end
    answered_here(ctx, ctx.interlock_route)
    for name, value in pairs(answer.header) do
        if not FRAMING[string.lower(name)] then
            ngx.header[name] = value
        end
    end
    ngx.status = answer.truncated and 502 or status
    if ngx.status ~= 204 and ngx.status ~= 304 then
        ngx.print(answer.body)
    end
    return ngx.exit(ngx.HTTP_OK)
end

-- rewrite_by_lua of FORWARD_AUTH_URI (a subrequest only): the request to the auth service
-- carries the client's headers its label names and what the client asked, nothing else.
function M.forward_auth_request()
    local ctx = ngx.ctx
    local auth = ctx.interlock_forward_auth
    if not auth then
        return ngx.exit(404)
    end
    -- 0: every header, however many (a bound would pass the ones past it on unchecked).
    for name in pairs(ngx.req.get_headers(0, true)) do
        if not auth.sent[string.lower(name)] then
            ngx.req.clear_header(name)
        end
    end
    local asked = ctx.interlock_asked
    ngx.req.set_header("Host", auth.host)
    ngx.req.set_header("X-Forwarded-Method", asked[1])
    ngx.req.set_header("X-Forwarded-Uri", asked[2])
    ngx.req.set_header("X-Forwarded-Host", asked[3])
    ngx.req.set_header("X-Forwarded-Proto", asked[4])
    ngx.req.set_header("X-Forwarded-For", asked[5])
    var.interlock_auth_path = auth.path
end
local PREFLIGHT_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

-- Whether this client passed `rate` for `upstream` (a fixed window per client address, counted
-- in the shared dict across workers); sets Retry-After when it did.
local function over_rate(rate, upstream)
    local moment = ngx.now()
    local window = math.floor(moment / rate.seconds)
    local count, err = limits:incr(upstream.name .. "\t" .. var.binary_remote_addr .. "\t" .. window, 1, 0, rate.seconds + 1)
    if not count then
        ngx.log(ngx.ERR, "interlock: rate limit not counted: ", err)
        return false
    end
    if count <= rate.burst then
        return false
    end
    ngx.header["Retry-After"] = math.max(1, math.ceil((window + 1) * rate.seconds - moment))
    return true
end

-- A service's policy, in the access phase once its route is chosen: the client's address, its
-- rate, a CORS preflight, its credentials, its auth service, then the request headers. Answers (and ends the
-- request) itself when the policy says no.
local function police(policy, upstream, ctx)
    local allow = policy.allow
    if allow then
        local binary, allowed = var.binary_remote_addr, false
        for i = 1, #allow do
            if in_network(binary, allow[i]) then
                allowed = true
                break
            end
        end
        if not allowed then
            return ngx.exit(403)
        end
    end
    if policy.rate and over_rate(policy.rate, upstream) then
        return ngx.exit(429)
    end
    local origins = policy.cors
    local origin = origins and var.http_origin
    if origin and (origins["*"] or origins[string.lower(origin)]) then
        local allowed = origins["*"] and "*" or origin
        if ngx.req.get_method() == "OPTIONS" and var.http_access_control_request_method then
            local header = ngx.header
            header["Access-Control-Allow-Origin"] = allowed
            header["Access-Control-Allow-Methods"] = PREFLIGHT_METHODS
            header["Access-Control-Allow-Headers"] = var.http_access_control_request_headers
            header["Access-Control-Max-Age"] = "600"
            header["Vary"] = "Origin"
            return ngx.exit(204)
        end
        ctx.interlock_cors = allowed
    end
    local secret = policy.auth
    if secret then
        local passed = interlock_certificates.authorized(secret, var.http_authorization)
        if passed == nil then
            -- The core has not sent this secret's users yet: never let anyone through.
            ngx.header["Retry-After"] = "1"
            return ngx.exit(503)
        elseif not passed then
            ngx.header["WWW-Authenticate"] = policy.challenge
            return ngx.exit(401)
        end
    end
    if policy.forward_auth then
        forward_auth(policy.forward_auth, ctx) -- ends the request unless the auth service said yes
    end
    local request = policy.request
    for i = 1, #request do
        ngx.req.set_header(request[i][1], request[i][2] or nil)
    end
    if #policy.response > 0 then
        ctx.interlock_response = policy.response
    end
end

-- header_filter_by_lua (http level): the response headers of the route's policy, and CORS.
function M.respond()
    local ctx = ngx.ctx
    local response = ctx.interlock_response
    if response then
        local header = ngx.header
        for i = 1, #response do
            header[response[i][1]] = response[i][2] or nil
        end
    end
    local origin = ctx.interlock_cors
    if origin then
        ngx.header["Access-Control-Allow-Origin"] = origin
        ngx.header["Vary"] = "Origin"
    end
end

local function match(routes, uri)
    for i = 1, #routes do
        local route = routes[i]
        local path = route.path
        if path == "/" then
            return route, false
        end
        if uri == path then
            return route, true
        end
        local prefix = route.prefix
        if string.sub(uri, 1, #prefix) == prefix then
            return route, false
        end
    end
    return nil
end

-- access_by_lua of the catch-all servers (run-time routing): find the host (the Host header;
-- on the TLS terminator only hosts whose TLS ends here), answer its redirects, choose the
-- route as nginx's locations would (exact path, then the longest prefix), cut a rewritten
-- context root, and leave the upstream for the balancer. `scheme` is the listener's.
function M.route(scheme)
    refresh()
    local https = scheme == "https"
    local name = var.host
    local host = cached(hosts, "h", name, parse_host)
    if host and https and not host.tls then
        host = nil
    end
    if not host then
        host = cached(hosts, "h", "_", parse_host)
        if not host or (https and not host.tls) then
            answered_here(ngx.ctx, nil)
            return ngx.exit(M.unknown_host_status)
        end
    end
    local ctx = ngx.ctx
    local target = host.redirect[scheme]
    if target then
        answered_here(ctx, host.count)
        return ngx.redirect(target .. var.request_uri, 302)
    end
    if host.ssl_only and not https then
        answered_here(ctx, host.count)
        local to = host.name == "_" and name or host.name
        return ngx.redirect("https://" .. to .. M.https_port_suffix .. var.request_uri, 302)
    end
    local route = host.only
    if not route then
        local uri = var.uri
        local exact
        route, exact = match(host.routes, uri)
        if not route then
            answered_here(ctx, host.count)
            return ngx.exit(404)
        end
        if route.rewrite then
            if exact then
                answered_here(ctx, host.count)
                local args = var.args
                return ngx.redirect(route.path .. "/" .. (args and "?" .. args or ""), 301)
            end
            ngx.req.set_uri(string.sub(uri, #route.path + 1))
        end
    end
    local upstream = cached(upstreams, "u", route.upstream, parse_upstream)
    if not upstream then
        ngx.log(ngx.ERR, "interlock: route to unknown upstream ", route.upstream)
        return ngx.exit(503)
    end
    ctx.interlock_upstream = upstream
    ctx.interlock_route = route.count
    if M.log_names then
        var.interlock_upstream = upstream.name
        var.interlock_service = upstream.services
    end
    local policy = upstream.policy
    if policy then
        police(policy, upstream, ctx)
    end
    if route.websocket then
        local upgrade = var.http_upgrade
        if upgrade then
            var.interlock_upgrade = upgrade
            var.interlock_connection = "upgrade"
        else
            var.interlock_connection = "close"
        end
    end
    local protocol = route.protocol
    if protocol ~= "http" then
        var.interlock_upstream = upstream.name
        var.interlock_route = route.count
        return ngx.exec(JUMPS[protocol])
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
