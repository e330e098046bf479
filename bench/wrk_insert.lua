-- wrk script for bench/server_bench.sh: HTTP inserts into `shale serve`, one document per
-- POST /collections/{c} or PER documents per POST /collections/{c}/batch, each request's body
-- built afresh with unique client ids ("<prefix><thread>-<seq>", so several runs against one
-- server never collide: a collision would be a 409, counted as an error).
--
--   wrk -t2 -c50 -d10s --latency -s bench/wrk_insert.lua http://127.0.0.1:PORT -- MODE PER COLL PREFIX
--     MODE   one | batch (default one)
--     PER    documents per batch request (default 100; ignored for one)
--     COLL   collection (default bench)
--     PREFIX id prefix (default w)
--
-- Every document has the same shape and size (about 150 bytes of JSON; numbers padded with
-- spaces, never leading zeros, which JSON forbids), like the documents
-- server_bench.sh loads for the read benchmark. done() prints one machine-readable line:
--   WRK_RESULT requests=N duration_us=N p50_us=N p99_us=N status_errors=N socket_errors=N
-- (status_errors: responses that were not 2xx/3xx).

local next_tid = 0

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
end

function init(args)
    mode = args[1] or "one"
    per = tonumber(args[2] or "100")
    coll = args[3] or "bench"
    prefix = args[4] or "w"
    if mode == "batch" then
        path = "/collections/" .. coll .. "/batch"
    else
        mode = "one"
        per = 1
        path = "/collections/" .. coll
    end
    headers = { ["Content-Type"] = "application/json" }
    seq = 0
    math.randomseed(1000 + tid)
end

local cities = { "Berlin", "Lisbon", "Nantes", "Oslo--", "Quito-", "Tokyo-", "Zurich", "Dakar-" }

local function doc()
    seq = seq + 1
    local n = math.random(0, 999999)
    return string.format(
        '{"_id":"%s%02d-%09d","name":"user %06d","email":"user%06d@example.com",' ..
        '"age":%02d,"city":"%s","active":%s,"score":%6d,"tags":["a","b"]}',
        prefix, tid, seq, n, n, 18 + n % 60, cities[1 + n % 8],
        (n % 2 == 0) and "true " or "false", n)
end

function request()
    local body
    if mode == "batch" then
        local parts = {}
        for i = 1, per do
            parts[i] = doc()
        end
        body = '{"documents":[' .. table.concat(parts, ",") .. ']}'
    else
        body = doc()
    end
    return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK_RESULT requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f " ..
        "status_errors=%.0f socket_errors=%.0f\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
