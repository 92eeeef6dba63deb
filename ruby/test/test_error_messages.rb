# frozen_string_literal: true

require_relative "helper"

# Errors that say what to do: timeouts in seconds, no worker, a peer that is
# not Gearman, a worker's own timeout, a zero timeout.
class TestErrorMessages < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Embedded.instance

  def test_a_job_nobody_takes_says_no_worker_took_it_in_seconds
    f = fname("nobody")
    e = assert_raises(Polygear::TimeoutError) { client.submit(f, "x", timeout: 0.3) }
    assert_match(/\Ano worker has taken job H:\S+ for function '#{f}' in 0\.3 s; is a worker registered\? \(timeout is in seconds\)\z/,
                 e.message)
    assert_equal "ETIMEDOUT", e.code
  end

  def test_a_job_that_runs_too_long_names_its_deadline_and_unit
    f = on(fname("slow")) do |_job|
      sleep 1
      "late"
    end
    with_worker do
      e = assert_raises(Polygear::TimeoutError) { client.submit(f, "x", timeout: 0.25) }
      assert_match(/\Ajob H:\S+ did not finish within 0\.25 s \(timeout is in seconds\)\z/, e.message)
    end
  end

  def test_zero_timeouts_are_rejected_before_anything_is_sent
    c = client
    f = fname("zero")
    message = "timeout must be greater than 0 (seconds), not 0"
    assert_equal message, assert_raises(ArgumentError) { c.submit(f, "x", timeout: 0) }.message
    assert_equal message, assert_raises(ArgumentError) { c.submit_job(f, "x", timeout: 0) }.message
    assert_equal message, assert_raises(ArgumentError) { c.submit_many(f, ["x"], timeout: 0) }.message
    assert_equal message, assert_raises(ArgumentError) { c.submit_json(f, 1, timeout: 0.0) }.message
    assert_equal message, assert_raises(ArgumentError) { Polygear::Client.new(servers: [server.address], timeout: 0) }.message
    assert_match(/connect_timeout must be greater than 0 \(seconds\)/,
                 assert_raises(ArgumentError) { Polygear::Client.new(servers: [server.address], connect_timeout: 0) }.message)
    assert_match(/greater than 0 \(seconds\), not -1/, assert_raises(ArgumentError) { c.submit(f, "x", timeout: -1) }.message)
    w = Polygear::Worker.new(servers: [server.address])
    assert_equal message, assert_raises(ArgumentError) { w.register(f, timeout: 0) { "" } }.message
    assert_empty w.functions
    Polygear::Admin.open(server.address) { |a| refute(a.status.any? { |s| s.function == f }) }
  end

  def test_a_peer_that_is_not_gearman_is_a_protocol_error_naming_what_it_said
    http = TCPServer.new("127.0.0.1", 0)
    port = http.addr[1]
    responder = Thread.new do
      loop do
        conn = http.accept
        conn.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close
      end
    rescue IOError
      nil
    end
    c = Polygear::Client.new(servers: ["127.0.0.1:#{port}"], timeout: 5)
    e = assert_raises(Polygear::ProtocolError) { c.submit("f", "x") }
    assert_match(/the server at 127\.0\.0\.1:#{port} answered 'HTTP', not Gearman/, e.message)
    assert_equal "EPROTOCOL", e.code
    c.close
  ensure
    http&.close
    responder&.join(2)
  end

  def test_a_worker_over_its_own_timeout_is_a_job_failure_with_the_reason
    f = on(fname("overdue"), timeout: 1) do |_job|
      sleep 2.5
      "too late"
    end
    with_worker do
      e = assert_raises(Polygear::JobFailed) { client.submit(f, "x") }
      assert_match(/\Ajob H:\S+ failed: the worker exceeded its 1 s timeout\z/, e.message)
      assert_equal "the worker exceeded its 1 s timeout", e.reason
      # the same through submit_job's events
      e = assert_raises(Polygear::JobFailed) { client.submit_job(f, "y").result }
      assert_equal "the worker exceeded its 1 s timeout", e.reason
    end
  end
end
