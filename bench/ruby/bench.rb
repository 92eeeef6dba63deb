# frozen_string_literal: true

# Ruby client + Ruby worker throughput: polygear vs a plain-socket pure-Ruby
# Gearman implementation written for this benchmark (plain_gearman.rb; the
# gearman-ruby gem cannot be installed here: rubygems.org is unreachable),
# plus the raw Rust pair (target/release/loadgen pair) for scale and
# `loadgen floor` (hand-written blocking pair, no library: the most any
# one-at-a-time pair can reach on this server). One C
# gearmand on a free port, same run, 16-byte jobs; the client runs in this
# process and the worker in a child process.
#
#   bash bench/ruby/run.sh [--n 3000] [--batch 20000]    # release gem in target/envs/bench
#   ruby bench/ruby/bench.rb [...]                       # the gem Ruby finds (release builds only)
require "optparse"
require "rbconfig"
require "socket"
require "timeout"
require "polygear"
require_relative "plain_gearman"

if Polygear::BUILD_PROFILE != "release"
  abort "bench: the polygear gem loaded is a #{Polygear::BUILD_PROFILE} build; " \
        "run bash bench/ruby/run.sh (it installs a release build into target/envs/bench)"
end

ROOT = File.expand_path("../..", __dir__)
TARGET = ENV["CARGO_TARGET_DIR"] || File.join(ROOT, "target")
opts = { n: 3000, batch: 20_000, threads: 32, concurrency: 32, window: 32, server: "gearmand" }
OptionParser.new do |o|
  o.on("--n N", Integer, "jobs in the one-at-a-time runs") { |v| opts[:n] = v }
  o.on("--batch N", Integer, "jobs in the many-in-flight runs") { |v| opts[:batch] = v }
  o.on("--threads N", Integer, "polygear client threads in the batch run") { |v| opts[:threads] = v }
  o.on("--concurrency N", Integer, "polygear worker concurrency in the batch run") { |v| opts[:concurrency] = v }
  o.on("--window N", Integer, "plain client jobs in flight in the batch run") { |v| opts[:window] = v }
  o.on("--server NAME", %w[gearmand polygeard], "job server every pair runs against (default gearmand)") do |v|
    opts[:server] = v
  end
end.parse!

def free_port
  s = TCPServer.new("127.0.0.1", 0)
  s.addr[1]
ensure
  s&.close
end

def wait_port(port)
  Timeout.timeout(15) do
    loop do
      TCPSocket.new("127.0.0.1", port).close
      break
    rescue SystemCallError
      sleep 0.05
    end
  end
end

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

LIB = File.dirname($LOADED_FEATURES.find { |f| f.end_with?("/polygear.rb") })
PLAIN = File.join(__dir__, "plain_gearman.rb")

# Starts a worker child process; returns its pid once it is registered.
def spawn_worker(kind, port, func, concurrency = 1)
  script = case kind
           when :polygear
             %(require "polygear"; w = Polygear::Worker.new(servers: ["127.0.0.1:#{port}"], concurrency: #{concurrency})
               w.register("#{func}") { |job| job.data }; w.work)
           when :plain
             %(require #{PLAIN.inspect}; PlainGearman::Worker.new("127.0.0.1", #{port}).work("#{func}") { |d| d })
           end
  pid = Process.spawn(RbConfig.ruby, "-I", LIB, "-e", script)
  admin = Polygear::Admin.new("127.0.0.1:#{port}")
  Timeout.timeout(20) { sleep 0.05 until admin.status.any? { |s| s.function == func && s.workers.positive? } }
  admin.close
  pid
end

def stop_worker(pid)
  Process.kill("TERM", pid)
  Timeout.timeout(10) { Process.wait(pid) }
rescue Timeout::Error
  Process.kill("KILL", pid)
  Process.wait(pid)
end

def rate(n)
  t0 = now
  yield
  n / (now - t0)
end

def rust_pair(port, n, window, scenario = "pair")
  bin = File.join(TARGET, "release", "loadgen")
  return nil unless File.executable?(bin)

  out = IO.popen([bin, scenario, "--addr", "127.0.0.1:#{port}", "--window", window.to_s, "--n", n.to_s,
                  "--size", "16"], &:read)
  out[/rate=([\d.]+)/, 1]&.to_f
end

port = free_port
gearmand = if opts[:server] == "polygeard"
             Process.spawn(File.join(TARGET, "release", "polygeard"), "-L", "127.0.0.1", "-p", port.to_s,
                           "-q", "builtin", "-l", "none", err: File::NULL)
           else
             Process.spawn("/usr/sbin/gearmand", "-L", "127.0.0.1", "-p", port.to_s, "-l", "stderr",
                           "--verbose", "ERROR", "-P", "/tmp/gearmand-rbbench-#{port}.pid", err: File::NULL)
           end
wait_port(port)
payload = "x" * 16
results = {}
begin
  # --- one job at a time -------------------------------------------------
  f = "bench_plain_serial"
  pid = spawn_worker(:plain, port, f)
  c = PlainGearman::Client.new("127.0.0.1", port)
  c.submit(f, payload)
  results["plain-socket serial"] = rate(opts[:n]) { opts[:n].times { raise "bad" unless c.submit(f, payload) == payload } }
  c.close
  stop_worker(pid)

  f = "bench_pg_serial"
  pid = spawn_worker(:polygear, port, f)
  c = Polygear::Client.new(servers: ["127.0.0.1:#{port}"])
  c.submit(f, payload)
  results["polygear serial"] = rate(opts[:n]) { opts[:n].times { raise "bad" unless c.submit(f, payload) == payload } }
  stop_worker(pid)

  results["rust pair serial"] = rust_pair(port, opts[:n], 1)
  results["floor: blocking raw pair (loadgen floor)"] = rust_pair(port, opts[:n], 1, "floor")

  # --- many jobs in flight -----------------------------------------------
  f = "bench_plain_batch"
  pid = spawn_worker(:plain, port, f)
  c = PlainGearman::Client.new("127.0.0.1", port)
  datas = Array.new(opts[:batch]) { payload }
  results["plain-socket batch (window=#{opts[:window]})"] = rate(opts[:batch]) do
    raise "bad" unless c.submit_many(f, datas, opts[:window]).all?(payload)
  end
  c.close
  stop_worker(pid)

  f = "bench_pg_batch"
  pid = spawn_worker(:polygear, port, f, opts[:concurrency])
  c = Polygear::Client.new(servers: ["127.0.0.1:#{port}"])
  per = opts[:batch] / opts[:threads]
  key = "polygear batch (#{opts[:threads]} threads, concurrency=#{opts[:concurrency]})"
  results[key] = rate(per * opts[:threads]) do
    Array.new(opts[:threads]) { Thread.new { per.times { raise "bad" unless c.submit(f, payload) == payload } } }
         .each(&:join)
  end
  key = "polygear batch (submit_many, concurrency=#{opts[:concurrency]})"
  results[key] = rate(opts[:batch]) do
    raise "bad" unless c.submit_many(f, Array.new(opts[:batch]) { payload }).all?(payload)
  end
  stop_worker(pid)

  results["rust pair window=#{opts[:concurrency]}"] = rust_pair(port, opts[:batch], opts[:concurrency])
ensure
  Process.kill("TERM", gearmand)
  Process.wait(gearmand)
end

puts "Ruby client + worker on #{opts[:server]}, 16-byte jobs"
puts format("%-48s %8s", "scenario", "jobs/s")
results.each { |k, v| puts format("%-48s %8s", k, v ? v.round.to_s : "n/a (loadgen not built)") }
get = ->(prefix) { results.find { |k, _| k.start_with?(prefix) }&.last }
ratio = ->(a, b) { (x = get[a]) && (y = get[b]) ? format("%.2fx", x / y) : "n/a" }
puts
puts "polygear serial / plain serial  : #{ratio['polygear serial', 'plain-socket serial']}  (target >= 3x)"
puts "polygear batch / plain serial   : #{ratio["polygear batch (#{opts[:threads]} ", 'plain-socket serial']}  (target >= 10x)"
puts "polygear batch / plain batch    : #{ratio["polygear batch (#{opts[:threads]} ", 'plain-socket batch']}"
puts "submit_many / plain serial      : #{ratio['polygear batch (submit_many', 'plain-socket serial']}  (target >= 10x)"
puts "submit_many / plain batch       : #{ratio['polygear batch (submit_many', 'plain-socket batch']}"
puts "rust pair serial / polygear serial : #{ratio['rust pair serial', 'polygear serial']}  (target <= 1.5x)"
puts "rust pair window / polygear batch  : #{ratio['rust pair window', 'polygear batch (submit_many']}"
puts "floor / plain serial            : #{ratio['floor', 'plain-socket serial']}  (the most any pair can reach here)"
