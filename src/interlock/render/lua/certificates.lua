-- Interlock's live certificates: served by the name a TLS client asks for (SNI), changed
-- without a reload.
--
-- The TLS servers of nginx.conf hold only a throwaway fallback pair (nginx wants one on an
-- `ssl` listener) and `ssl_certificate_by_lua_block { interlock_certificates.serve() }`. The
-- certificates live in the shared dict `interlock_certificates`: when nginx loads its
-- configuration the master reads the whole document from <prefix>/certificates (a 0400 file
-- on the proxy's tmpfs that the proxy agent keeps); afterwards the agent posts each new
-- document to the loopback status port (with its bearer token), and every worker serves it
-- from its next handshake on. The document (interlock/render/nginx_certificates.py):
--
--     interlock certificates 1 TAG
--     host NAME ID                      (NAME `_`: the default TLS host)
--     certificate ID CHAIN_BYTES KEY_BYTES
--     <the PEM chain><the PEM key>
--     challenge TOKEN KEY_AUTHORIZATION  (ACME HTTP-01, answered by `challenge()`)
--     credentials SECRET ID BYTES        (an auth_basic secret's htpasswd users, checked by
--     <the user:hash lines>               `authorized()`)
--
-- A handshake reads one string from the shared dict (the tag); a worker reads the host table
-- again only when the tag moved, and parses a certificate and key once per id. A name no host
-- has gets the default TLS host's certificate, or the handshake is refused, as nginx's
-- `ssl_reject_handshake` would.
local ssl = require "ngx.ssl"
local ffi = require "ffi"

-- pcall: a second load of this library in one Lua VM must not fail on the declaration.
pcall(ffi.cdef, [[char *crypt(const char *phrase, const char *setting);]])

local shared = ngx.shared.interlock_certificates
local prefix = ngx.config.prefix()

local M = {}

local function read_file(path)
    local file = io.open(path, "rb")
    if not file then
        return nil
    end
    local data = file:read("*a")
    file:close()
    return data
end

-- The document as { tag = TAG, hosts = { NAME = ID }, certs = { ID = { CHAIN, KEY } } }, or nil
-- and why; every certificate and key is parsed here, so what is stored loads.
local function parse(text)
    local header_end = string.find(text, "\n", 1, true)
    local tag = header_end and string.match(string.sub(text, 1, header_end - 1), "^interlock certificates 1 (%S+)$")
    if not tag then
        return nil, "not a certificates document"
    end
    local document = { tag = tag, hosts = {}, certs = {}, challenges = {}, users = {} }
    local at = header_end + 1
    while at <= #text do
        local line_end = string.find(text, "\n", at, true)
        if not line_end then
            return nil, "truncated document"
        end
        local line = string.sub(text, at, line_end - 1)
        at = line_end + 1
        local name, id = string.match(line, "^host (%S+) (%x+)$")
        local token, answer = string.match(line, "^challenge ([%w_%-]+) ([%w_%-%.]+)$")
        local secret, users_id, users_bytes = string.match(line, "^credentials (%S+) (%x+) (%d+)$")
        if name then
            document.hosts[name] = id
        elseif token then
            document.challenges[token] = answer
        elseif secret then
            users_bytes = tonumber(users_bytes)
            local users = string.sub(text, at, at + users_bytes - 1)
            if #users ~= users_bytes then
                return nil, "truncated credentials " .. secret
            end
            document.users[secret] = users_id .. "\n" .. users
            at = at + users_bytes
        else
            local cid, chain_bytes, key_bytes = string.match(line, "^certificate (%x+) (%d+) (%d+)$")
            if not cid then
                return nil, "malformed line: " .. string.sub(line, 1, 80)
            end
            chain_bytes, key_bytes = tonumber(chain_bytes), tonumber(key_bytes)
            local chain = string.sub(text, at, at + chain_bytes - 1)
            local key = string.sub(text, at + chain_bytes, at + chain_bytes + key_bytes - 1)
            if #chain ~= chain_bytes or #key ~= key_bytes then
                return nil, "truncated certificate " .. cid
            end
            if not ssl.parse_pem_cert(chain) then
                return nil, "certificate " .. cid .. " is not a PEM chain"
            end
            if not ssl.parse_pem_priv_key(key) then
                return nil, "the key of certificate " .. cid .. " is not a PEM private key"
            end
            document.certs[cid] = { chain, key }
            at = at + chain_bytes + key_bytes
        end
    end
    for name, id in pairs(document.hosts) do
        if not document.certs[id] then
            return nil, "host " .. name .. " names no certificate"
        end
    end
    return document
end

-- Store `document`: the certificates first, then the host table, the tag last. Certificates
-- the previous document used and this one does not are deleted with the next change, not now:
-- a worker that read the previous host table a moment ago may still ask for them.
local function store(document)
    for id, pair in pairs(document.certs) do
        local ok, err = shared:safe_set("c:" .. id, pair[1])
        if ok then
            ok, err = shared:safe_set("k:" .. id, pair[2])
        end
        if not ok then
            return nil, "shared dict interlock_certificates: " .. err
        end
    end
    local lines = {}
    for name, id in pairs(document.hosts) do
        lines[#lines + 1] = name .. " " .. id
    end
    local ok, err = shared:safe_set("hosts", table.concat(lines, "\n"))
    if not ok then
        return nil, "shared dict interlock_certificates: " .. err
    end
    local previous = shared:get("ids") or ""
    local ids = {}
    for id in pairs(document.certs) do
        ids[#ids + 1] = id
    end
    shared:set("ids", table.concat(ids, " "))
    local tokens = {}
    for token, answer in pairs(document.challenges) do
        local stored, failure = shared:safe_set("a:" .. token, answer)
        if not stored then
            return nil, "shared dict interlock_certificates: " .. failure
        end
        tokens[#tokens + 1] = token
    end
    for token in string.gmatch(shared:get("tokens") or "", "%S+") do
        if not document.challenges[token] then
            shared:delete("a:" .. token)
        end
    end
    shared:set("tokens", table.concat(tokens, " "))
    local secrets = {}
    for secret, users in pairs(document.users) do
        local stored, failure = shared:safe_set("p:" .. secret, users)
        if not stored then
            return nil, "shared dict interlock_certificates: " .. failure
        end
        secrets[#secrets + 1] = secret
    end
    for secret in string.gmatch(shared:get("secrets") or "", "%S+") do
        if not document.users[secret] then
            shared:delete("p:" .. secret)
        end
    end
    shared:set("secrets", table.concat(secrets, " "))
    shared:set("tag", document.tag)
    for id in string.gmatch(shared:get("stale") or "", "%S+") do
        if not document.certs[id] then
            shared:delete("c:" .. id)
            shared:delete("k:" .. id)
        end
    end
    local stale = {}
    for id in string.gmatch(previous, "%S+") do
        if not document.certs[id] then
            stale[#stale + 1] = id
        end
    end
    shared:set("stale", table.concat(stale, " "))
    return document.tag
end

-- Called from init_by_lua (in the master, at start and at every reload): the document the
-- agent keeps for the proxy's next start.
function M.init()
    local text = read_file(prefix .. "certificates")
    if text and text ~= "" then
        local document, err = parse(text)
        local stored
        if document then
            stored, err = store(document)
        end
        if not stored then
            ngx.log(ngx.ERR, "interlock: ", prefix, "certificates not loaded: ", err)
        end
    end
    local token = read_file(prefix .. "control-token")
    M.token = token and string.match(token, "^%s*(%S+)%s*$")
end

local seen_tag
local host_ids = {}
local parsed = {}

local function refresh()
    local tag = shared:get("tag")
    if tag ~= seen_tag then
        seen_tag = tag
        host_ids = {}
        for name, id in string.gmatch(shared:get("hosts") or "", "(%S+) (%x+)") do
            host_ids[name] = id
        end
        -- Parsed pairs no host uses any more go now (a rotated key does not stay in memory).
        local kept = {}
        for _, id in pairs(host_ids) do
            kept[id] = parsed[id]
        end
        parsed = kept
    end
end

local function loaded(id)
    local pair = parsed[id]
    if pair then
        return pair
    end
    local chain, key = shared:get("c:" .. id), shared:get("k:" .. id)
    if not (chain and key) then
        return nil
    end
    local cert, err = ssl.parse_pem_cert(chain)
    local pkey
    if cert then
        pkey, err = ssl.parse_pem_priv_key(key)
    end
    if not pkey then
        ngx.log(ngx.ERR, "interlock: certificate ", id, " not usable: ", err)
        return nil
    end
    pair = { cert, pkey }
    parsed[id] = pair
    return pair
end

-- ssl_certificate_by_lua: the certificate of the host the client names, else the default TLS
-- host's, else the handshake is refused.
function M.serve()
    refresh()
    local name = ssl.server_name()
    local id = name and host_ids[string.lower(name)] or host_ids["_"]
    local pair = id and loaded(id)
    if not pair then
        return ngx.exit(ngx.ERROR)
    end
    local ok, err = ssl.clear_certs()
    if ok then
        ok, err = ssl.set_cert(pair[1])
    end
    if ok then
        ok, err = ssl.set_priv_key(pair[2])
    end
    if not ok then
        ngx.log(ngx.ERR, "interlock: certificate ", id, " not set: ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- content_by_lua on the loopback status port: GET answers the tag in use; POST (with the
-- agent's bearer token) stores a whole new document and answers its tag.
function M.control()
    if ngx.req.get_method() == "GET" then
        ngx.print(shared:get("tag") or "")
        return
    end
    if not M.token or ngx.var.http_authorization ~= "Bearer " .. M.token then
        return ngx.exit(403)
    end
    ngx.req.read_body()
    -- The body stays in memory (client_body_buffer_size is the most it may be): keys never
    -- go to a temporary file.
    local document, err = parse(ngx.req.get_body_data() or "")
    local tag
    if document then
        tag, err = store(document)
    end
    if not tag then
        ngx.status = 400
        ngx.print(err)
        return
    end
    ngx.print(tag)
end

local ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

local function to64(value, count)
    local out = {}
    for i = 1, count do
        local index = value % 64
        out[i] = string.sub(ITOA64, index + 1, index + 1)
        value = math.floor(value / 64)
    end
    return table.concat(out)
end

-- Apache's apr1: MD5-crypt with its own magic, which the C library's crypt does not know.
local function apr1(password, salt)
    local md5 = ngx.md5_bin
    local magic = "$apr1$"
    local alternate = md5(password .. salt .. password)
    local parts = { password, magic, salt }
    local left = #password
    while left > 0 do
        parts[#parts + 1] = string.sub(alternate, 1, math.min(16, left))
        left = left - 16
    end
    left = #password
    while left > 0 do
        parts[#parts + 1] = left % 2 == 1 and "\0" or string.sub(password, 1, 1)
        left = math.floor(left / 2)
    end
    local final = md5(table.concat(parts))
    for round = 0, 999 do
        local odd = round % 2 == 1
        final = md5((odd and password or final) .. (round % 3 ~= 0 and salt or "")
            .. (round % 7 ~= 0 and password or "") .. (odd and final or password))
    end
    local b = { string.byte(final, 1, 16) }
    return magic .. salt .. "$"
        .. to64(b[1] * 65536 + b[7] * 256 + b[13], 4) .. to64(b[2] * 65536 + b[8] * 256 + b[14], 4)
        .. to64(b[3] * 65536 + b[9] * 256 + b[15], 4) .. to64(b[4] * 65536 + b[10] * 256 + b[16], 4)
        .. to64(b[5] * 65536 + b[11] * 256 + b[6], 4) .. to64(b[12], 2)
end

local function crypt(password, hashed)
    local salt = string.match(hashed, "^%$apr1%$([^$]+)%$")
    if salt then
        return apr1(password, salt)
    end
    -- bcrypt and SHA-crypt: the C library's (libxcrypt, which nginx itself links).
    local result = ffi.C.crypt(password, hashed)
    return result ~= nil and ffi.string(result) or nil
end

local users_tag
local seen_users = {}
local MAX_PASSED = 4096

-- The users of htpasswd secret `secret` as this worker last parsed them, with the Authorization
-- headers that passed (nil when the core has not sent that secret). One short read of the
-- shared dict a request: the document's tag; anything new in it starts the worker afresh.
local function users_of(secret)
    local tag = shared:get("tag")
    if tag ~= users_tag then
        users_tag, seen_users = tag, {}
    end
    local users = seen_users[secret]
    if users == nil then
        local stored = shared:get("p:" .. secret)
        if not stored then
            return nil
        end
        users = { hashes = {}, passed = {}, count = 0 }
        for user, hashed in string.gmatch(stored, "\n([^:\n]+):([^\n]+)") do
            users.hashes[user] = hashed
        end
        seen_users[secret] = users
    end
    return users
end

-- Whether the Authorization header names a user of htpasswd secret `secret` with its password
-- (nil when the core has not sent that secret's users yet). A slow hash costs milliseconds, so
-- each worker remembers the headers that passed (at most MAX_PASSED a secret) until its
-- certificates document changes.
function M.authorized(secret, header)
    local users = users_of(secret)
    if not users then
        return nil
    end
    if not header then
        return false
    end
    if users.passed[header] then
        return true
    end
    local encoded = string.match(header, "^%s*[Bb][Aa][Ss][Ii][Cc]%s+([%w+/=]+)%s*$")
    local decoded = encoded and ngx.decode_base64(encoded)
    local user, password
    if decoded then
        user, password = string.match(decoded, "^([^:]*):(.*)$")
    end
    local hashed = user and users.hashes[user]
    if not hashed or string.find(password, "\0", 1, true) or crypt(password, hashed) ~= hashed then
        return false
    end
    if users.count >= MAX_PASSED then
        users.passed, users.count = {}, 0
    end
    users.passed[header], users.count = true, users.count + 1
    return true
end

-- content_by_lua of /.well-known/acme-challenge/: the key authorization of the token the
-- request names, if the core sent it, else 404.
function M.challenge()
    local token = string.match(ngx.var.uri, "^/%.well%-known/acme%-challenge/([%w_%-]+)$")
    local answer = token and shared:get("a:" .. token)
    if not answer then
        return ngx.exit(ngx.HTTP_NOT_FOUND)
    end
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(answer)
end

return M
