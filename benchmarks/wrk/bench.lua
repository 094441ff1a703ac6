-- wrk script for benchmarks/compare.py.
--
--   wrk -t2 -c64 -d15s --latency -s benchmarks/wrk/bench.lua http://127.0.0.1:8101 -- \
--       mode=consume prefix=/v1 ids=acct- accounts=1000 auth=<api key>
--
-- Arguments (after "--", key=value):
--   mode      consume | balance | hot | batch
--   prefix    path prefix ("/v1" for the ledger, "" for the baseline)
--   ids       account id prefix; account i (0-based) is ids .. string.format("%04d", i)
--   accounts  how many accounts to pick from, uniformly at random per request
--   hot       the account id every request of mode=hot goes to
--   auth      Bearer token (optional)
--   batch     operations per POST /v1/batch request (mode=batch)
--
-- done() prints one line "WRK_JSON {...}" with the summary, latency percentiles
-- (microseconds), the statuses of all threads (each thread has its own Lua
-- state, so setup() keeps the threads and done() reads their tables) and, for
-- mode=batch, how many operations were answered 201 (ok_ops) and 402 (refused_ops).

local threads = {}
local count = 0

function setup(thread)
   count = count + 1
   thread:set("tid", count)
   table.insert(threads, thread)
end

local function options(args)
   local cfg = { mode = "consume", prefix = "", ids = "acct-", accounts = "1000", batch = "500" }
   for _, a in ipairs(args) do
      local k, v = a:match("^([^=]+)=(.*)$")
      if k then cfg[k] = v end
   end
   return cfg
end

local function headers(cfg, json)
   local h = {}
   if json then h["Content-Type"] = "application/json" end
   if cfg.auth and cfg.auth ~= "" then h["Authorization"] = "Bearer " .. cfg.auth end
   return h
end

local function account(cfg, i)
   return cfg.ids .. string.format("%04d", i)
end

local requests = {}
local mode

function init(args)
   local cfg = options(args)
   mode = cfg.mode
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
   statuses = {}
   ok_ops = 0
   refused_ops = 0
   local n = tonumber(cfg.accounts)
   if mode == "consume" then
      for i = 0, n - 1 do
         local path = cfg.prefix .. "/accounts/" .. account(cfg, i) .. "/consumptions"
         requests[#requests + 1] = wrk.format("POST", path, headers(cfg, true), '{"amount":1}')
      end
   elseif mode == "balance" then
      for i = 0, n - 1 do
         local path = cfg.prefix .. "/accounts/" .. account(cfg, i) .. "/balance"
         requests[#requests + 1] = wrk.format("GET", path, headers(cfg, false))
      end
   elseif mode == "hot" then
      local path = cfg.prefix .. "/accounts/" .. cfg.hot .. "/consumptions"
      requests[1] = wrk.format("POST", path, headers(cfg, true), '{"amount":1}')
   elseif mode == "batch" then
      local size = tonumber(cfg.batch)
      for _ = 1, 32 do -- 32 different bodies per thread, each with random accounts
         local ops = {}
         for j = 1, size do
            local id = account(cfg, math.random(0, n - 1))
            ops[j] = '{"op":"consume","account_id":"' .. id .. '","amount":1}'
         end
         local body = '{"operations":[' .. table.concat(ops, ",") .. "]}"
         requests[#requests + 1] = wrk.format("POST", cfg.prefix .. "/batch", headers(cfg, true), body)
      end
   else
      error("unknown mode " .. tostring(mode))
   end
end

function request()
   return requests[math.random(#requests)]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if mode == "batch" and status == 200 and body then
      local _, n = string.gsub(body, '"status":%s*201', "")
      ok_ops = ok_ops + n
      local _, r = string.gsub(body, '"status":%s*402', "")
      refused_ops = refused_ops + r
   end
end

local function encode(value)
   if type(value) == "table" then
      local parts = {}
      for k, v in pairs(value) do
         parts[#parts + 1] = '"' .. tostring(k) .. '":' .. encode(v)
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif type(value) == "number" then
      if value ~= value or value == math.huge or value == -math.huge then return "null" end
      return string.format("%.17g", value)
   else
      return '"' .. tostring(value) .. '"'
   end
end

function done(summary, latency, requests)
   local merged, ops, refused = {}, 0, 0
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses") or {}
      for code, n in pairs(s) do
         merged[tostring(code)] = (merged[tostring(code)] or 0) + n
      end
      ops = ops + (thread:get("ok_ops") or 0)
      refused = refused + (thread:get("refused_ops") or 0)
   end
   local out = {
      requests = summary.requests,
      duration_us = summary.duration,
      bytes = summary.bytes,
      errors = summary.errors,
      statuses = merged,
      ok_ops = ops,
      refused_ops = refused,
      latency_us = {
         min = latency.min,
         mean = latency.mean,
         max = latency.max,
         stdev = latency.stdev,
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
         p999 = latency:percentile(99.9),
      },
   }
   io.write("WRK_JSON " .. encode(out) .. "\n")
end
