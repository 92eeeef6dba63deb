# frozen_string_literal: true

require_relative "helper"
require "logger"
require "stringio"

# A worker says when it cannot reach a server, can fail fast, and a stop
# with a timeout hands unfinished jobs back to the server.
class TestWorkerConnections < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Embedded.instance

  def logger(out, level = Logger::DEBUG)
    Logger.new(out, level: level, progname: "polygear")
  end

  def test_failed_connects_are_logged_while_work_retries
    out = StringIO.new
    dead = "127.0.0.1:#{PolygearTest.free_port}"
    worker = Polygear::Worker.new(servers: [dead], logger: logger(out))
    worker.register(fname) { |_job| "" }
    thread = Thread.new { worker.work }
    Timeout.timeout(10) { sleep 0.05 until out.string.include?("cannot connect") }
    worker.stop
    assert thread.join(10), "work did not return after stop"
    assert_match(/WARN -- polygear: worker cannot connect to #{dead}: .*\(attempt 1; retrying in/, out.string)
  end

  def test_connects_are_logged_at_info
    out = StringIO.new
    f = on(fname) { |_job| "ok" }
    with_worker(logger: logger(out, Logger::INFO)) do
      assert_equal "ok", client.submit(f, "x")
    end
    assert_match(/INFO -- polygear: worker connected to #{Regexp.escape(server.address)}/, out.string)
  end

  def test_fail_fast_raises_when_no_server_can_be_reached
    out = StringIO.new
    dead = "127.0.0.1:#{PolygearTest.free_port}"
    worker = Polygear::Worker.new(servers: [dead], fail_fast: true, connect_timeout: 2, logger: logger(out))
    worker.register(fname) { |_job| "" }
    t0 = monotonic
    e = assert_raises(Polygear::ConnectionError) { worker.work }
    assert_operator monotonic - t0, :<, 5
    assert_equal "ECONNREFUSED", e.code
    assert_match(/#{dead}/, e.message)
    assert worker.stopped?
    assert_match(/cannot connect to #{dead}/, out.string)
    # with a server up, fail_fast just starts
    f = on(fname("ff")) { |_job| "up" }
    with_worker(fail_fast: true) { assert_equal "up", client.submit(f, "x") }
  end

  def test_stop_with_a_timeout_hands_the_running_job_back_to_the_server
    f = fname("handback")
    started = Queue.new
    out = StringIO.new
    slow = Polygear::Worker.new(servers: [server.address], logger: logger(out))
    slow.register(f) do |_job|
      started << true
      sleep 30
      "from the slow worker"
    end
    thread = Thread.new { slow.work }
    result = Thread.new { client.submit(f, "x", timeout: 30) }
    Timeout.timeout(10) { started.pop }
    t0 = monotonic
    slow.stop(timeout: 0.3)
    assert thread.join(10), "work did not return after its stop timeout"
    assert_operator monotonic - t0, :<, 5
    assert_match(/WARN -- polygear: stop timeout of 0.3 s passed: handed 1 unfinished job back to the server, which requeues it for another worker/,
                 out.string)
    # another worker runs the requeued job; the client gets its result
    on(f) { |_job| "from the second worker" }
    with_worker { assert_equal "from the second worker", result.value }
    assert_raises(ArgumentError) { Polygear::Worker.new(servers: [server.address]).stop(timeout: -1) }
  end
end
