-- wrk script: the same signed body, a unique X-GitHub-Delivery per request.
-- The body and its signature are read from files the Python driver writes.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb")); wrk.body = f:read("*a"); f:close()
  local s = assert(io.open(args[2], "rb")); local signature = s:read("*a"); s:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "issue_comment"
  wrk.headers["X-Hub-Signature-256"] = signature
  wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
  thread_id = id
  run_tag = args[3]
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("%s-%d-%d", run_tag, thread_id, counter)
  return wrk.format()
end
