# frozen_string_literal: true

# Shared fixtures for the polygear minitest suite.
#
# Run against the INSTALLED gem (what scripts/test-ruby.sh does):
#   ruby -e 'Dir["ruby/test/test_*.rb"].each { |f| require File.expand_path(f) }'
# or against a dev build: ruby -Iruby/lib ... (see ruby/README.md).
#
# Environment:
#   POLYGEAR_TEST_INSTALLED=1  assert that polygear was loaded from an installed gem
#   POLYGEAR_BIN_DIR           where the `polygear` CLI lives (Rust worker interop)
#   GEARMAND / GEARMAN         paths of the C gearmand / gearman (default: PATH, /usr/sbin)

require "minitest/autorun"
require "socket"
require "timeout"
require "polygear"

module PolygearTest
  module_function

  # A program on PATH or in /usr/sbin.
  def which(name)
    (ENV.fetch("PATH", "").split(":") + %w[/usr/sbin /usr/local/sbin /sbin])
      .map { |d| File.join(d, name) }.find { |p| File.file?(p) && File.executable?(p) }
  end

  def free_port
    s = TCPServer.new("127.0.0.1", 0)
    s.addr[1]
  ensure
    s&.close
  end

  def wait_port(port, deadline_s = 15)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + deadline_s
    loop do
      TCPSocket.new("127.0.0.1", port).close
      return true
    rescue SystemCallError
      raise "nothing listens on port #{port} after #{deadline_s}s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  # The directory polygear.rb was loaded from (to start Ruby subprocesses
  # that load the very same copy).
  def lib_dir
    File.dirname($LOADED_FEATURES.find { |f| f.end_with?("/polygear.rb") })
  end

  # The C gearmand on a free loopback port, started once per run.
  class Gearmand
    attr_reader :port

    def self.instance
      @instance ||= new.tap { |g| Minitest.after_run { g.stop } }
    end

    def initialize
      bin = ENV["GEARMAND"] || PolygearTest.which("gearmand")
      raise "gearmand not installed (apt-get install gearman-job-server)" unless bin

      @port = PolygearTest.free_port
      @pid = Process.spawn(bin, "-L", "127.0.0.1", "-p", @port.to_s, "-l", "stderr", "--verbose", "ERROR",
                           "-P", "/tmp/polygear-rb-gearmand-#{@port}.pid", in: File::NULL, out: File::NULL)
      PolygearTest.wait_port(@port)
    end

    def address = "127.0.0.1:#{@port}"

    def stop
      return unless @pid

      Process.kill("TERM", @pid)
      Timeout.timeout(5) { Process.wait(@pid) }
    rescue Timeout::Error
      Process.kill("KILL", @pid)
      Process.wait(@pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    ensure
      @pid = nil
    end
  end

  # Polygear::Server (the Rust server in this process), started once per run.
  class Embedded
    def self.instance
      @instance ||= new.tap { |e| Minitest.after_run { e.stop } }
    end

    def initialize
      @server = Polygear::Server.new
    end

    def port = @server.port
    def address = @server.address
    def stop = @server.stop
  end

  # Helpers mixed into every test class; the class defines #server.
  module Helpers
    # A function name nobody else uses.
    def fname(base = "f")
      @fcount = (@fcount || 0) + 1
      "#{base}_#{name.gsub(/\W/, '')[0, 30]}_#{@fcount}_#{rand(1 << 30)}"
    end

    def client(**opts)
      c = Polygear::Client.new(servers: [server.address], timeout: 20, **opts)
      (@clients ||= []) << c
      c
    end

    # Runs a worker in a thread for the duration of the block; stops it and
    # joins (bounded) afterwards. Returns the block's value.
    # Its logger is quiet unless +logger:+ is given.
    def with_worker(concurrency: 1, logger: Logger.new(IO::NULL), **kw)
      worker = Polygear::Worker.new(servers: [server.address], concurrency: concurrency, logger: logger, **kw)
      yield_registrations(worker)
      thread = Thread.new { worker.work }
      thread.report_on_exception = false
      begin
        yield worker, thread
      ensure
        worker.stop
        raise "worker did not stop within 15s" unless thread.join(15)
      end
    end

    def yield_registrations(worker)
      @registrations&.each { |(n, t, j, b)| worker.register(n, timeout: t, json: j, &b) }
      @registrations = nil
    end

    # Queues a registration for the next with_worker.
    def on(func, timeout: nil, json: false, &block)
      (@registrations ||= []) << [func, timeout, json, block]
      func
    end

    def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    def teardown
      @clients&.each(&:close)
      super
    end
  end
end
