-- The proxy's health check for a load balancer in front of it (`/_interlock/health` on the
-- HTTP port, any host): 200 "serving", or 503 "draining" once the proxy agent, about to stop,
-- said so (POST /interlock/drain on the loopback status port, with its bearer token; the body
-- "0" takes that back, when what looked like a coming stop was not one). The
-- proxy serves every other request as before while it drains; the flag is in a shared dict,
-- so every worker answers alike, and a reload during the drain keeps it.
local shared = ngx.shared.interlock_state

local M = {}

function M.init()
    local file = io.open(ngx.config.prefix() .. "control-token", "rb")
    if file then
        M.token = string.match(file:read("*a") or "", "^%s*(%S+)%s*$")
        file:close()
    end
end

-- content_by_lua of /_interlock/health.
function M.answer()
    if shared:get("draining") then
        ngx.status = 503
        ngx.say("draining")
    else
        ngx.say("serving")
    end
end

-- content_by_lua of the status port's /interlock/drain: POST only, with the agent's token.
function M.drain()
    if ngx.req.get_method() ~= "POST" then
        return ngx.exit(405)
    end
    if not M.token or ngx.var.http_authorization ~= "Bearer " .. M.token then
        return ngx.exit(403)
    end
    ngx.req.read_body()
    if ngx.req.get_body_data() == "0" then
        shared:delete("draining")
        ngx.say("serving")
    else
        shared:set("draining", true)
        ngx.say("draining")
    end
end

return M
