# frozen_string_literal: true

# Ruby side of the cross-language failure table (see tests/failures/run.py).
#   ruby failures.rb worker <server>        serves rb.* until SIGTERM
#   ruby failures.rb client <config-json>   runs every scenario, one JSON line each
require "json"
require "polygear"

LANG = "rb"
# Timeouts in the language's unit: seconds.
SHORT = 0.3

def worker(server)
  w = Polygear::Worker.new(servers: [server], concurrency: 4, client_id: "failures-rb")
  w.register("#{LANG}.sleep") do |job|
    sleep Float(job.data)
    "slept"
  end
  w.register("#{LANG}.raise") { |_job| raise "boom from #{LANG}" }
  w.register("#{LANG}.badresult") { |_job| { w: 1 } }
  w.register("#{LANG}.timeout", timeout: 1) do |_job|
    sleep 3
    "too late"
  end
  w.work # SIGTERM stops it gracefully
end

# The row of the shared error table +exc+ belongs to.
def category(exc)
  order = [
    [Polygear::JobException, "jobexception"],
    [Polygear::JobFailed, "jobfailed"],
    [Polygear::ConnectionError, "connection"],
    [Polygear::TimeoutError, "timeout"],
    [Polygear::ProtocolError, "protocol"],
    [Polygear::ServerError, "server"],
    [Polygear::ClosedError, "closed"],
    [ArgumentError, "invalid"],
    [TypeError, "type"]
  ]
  order.each { |cls, name| return name if exc.is_a?(cls) }
  "other"
end

def run(scenario)
  row = { scenario: scenario }
  begin
    yield
    row.merge!(category: "none", class: "-", code: nil, message: "no error raised")
  rescue StandardError => e
    code = e.respond_to?(:code) ? e.code : nil
    row.merge!(category: category(e), class: e.class.name, code: code, message: e.message)
  end
  $stdout.puts JSON.generate(row)
  $stdout.flush
end

def client(config)
  server, http, dead = config.values_at("server", "http", "dead")
  c = Polygear::Client.new(servers: [server])
  fresh = ->(s) { Polygear::Client.new(servers: [s]) }
  run("connect_refused") { fresh.call(dead).submit("x", "") }
  run("host_not_found") { fresh.call("nosuch.invalid:4730").submit("x", "") }
  run("not_gearman") { fresh.call(http).submit("x", "") }
  run("worker_fail_fast") do
    w = Polygear::Worker.new(servers: [dead], fail_fast: true)
    w.register("x") { |_job| "" }
    w.work(trap_signals: false)
  end
  run("empty_function") { c.submit("", "x") }
  run("zero_timeout") { c.submit("#{LANG}.sleep", "0", timeout: 0) }
  run("no_worker") { c.submit("#{LANG}.nobody", "", timeout: SHORT) }
  run("slow_job") { c.submit("#{LANG}.sleep", "1", timeout: SHORT) }
  run("job_exception") { c.submit("#{LANG}.raise", "") }
  run("bad_result") { c.submit("#{LANG}.badresult", "") }
  run("worker_timeout") { c.submit("#{LANG}.timeout", "") }
  run("busy_port") { Polygear::Server.new(port: config["busy_port"]).stop }
  run("bad_port") { Polygear::Server.new(port: 99_999).stop }
  c.close
end

if ARGV[0] == "worker"
  worker(ARGV[1])
else
  client(JSON.parse(ARGV[1]))
end
