# frozen_string_literal: true

require_relative "helper"

# Client.open, submit_job's events and the JSON mode.
class TestClientApi < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Embedded.instance

  def test_open_with_a_block_closes_the_client_and_returns_the_value
    kept = nil
    value = Polygear::Client.open(servers: [server.address]) do |c|
      kept = c
      c.echo("ping")
    end
    assert_equal "ping", value
    assert_raises(Polygear::ClosedError) { kept.echo("again") }
    c = Polygear::Client.open(servers: [server.address])
    assert_instance_of Polygear::Client, c
    assert_equal "x", c.echo("x")
    c.close
  end

  def events_job
    on(fname("events")) do |job|
      raise "failing as asked" if job.data == "fail"

      job.send_data("d1")
      job.send_warning("w1")
      job.send_status(1, 2)
      "result"
    end
  end

  def summary(events)
    events.map { |e| [e.type, e.type == :status ? [e.numerator, e.denominator] : e.data] }
  end

  def test_submit_job_yields_every_event_and_returns_the_result
    f = events_job
    with_worker do
      events = []
      assert_equal "result", client.submit_job(f, "x", priority: :high) { |ev| events << ev }
      assert_equal [[:data, "d1"], [:warning, "w1"], [:status, [1, 2]], [:complete, "result"]], summary(events)
      assert_raises(Polygear::JobException) { client.submit_job(f, "fail") { |_ev| nil } }
    end
  end

  def test_submit_job_without_a_block_returns_a_running_job
    f = events_job
    with_worker do
      job = client.submit_job(f, "x")
      assert_instance_of Polygear::RunningJob, job
      assert_match(/\AH:/, job.handle)
      assert_equal [:data, :warning, :status, :complete], job.map(&:type)
      assert_equal "result", job.result
      assert_nil job.next_event

      job = client.submit_job(f, "x")
      assert_equal "result", job.result
      failing = client.submit_job(f, "fail")
      e = assert_raises(Polygear::JobException) { failing.result }
      assert_equal "failing as asked", e.worker_message
      assert_raises(Polygear::JobException) { failing.result }
    end
  end

  def test_json_mode_round_trips_values
    seen = Queue.new
    f = on(fname("json"), json: true) do |value, job|
      seen << [value, job.function]
      { "got" => value, "n" => 1.5, "s" => "é✓" }
    end
    g = on(fname("jsonnil"), json: true) { |_value, _job| nil }
    nan = on(fname("jsonnan"), json: true) { |_value| Float::NAN }
    with_worker do
      sent = { "a" => 1, :b => [1, "two", nil, true], "c" => { "d" => "é" } }
      decoded = { "a" => 1, "b" => [1, "two", nil, true], "c" => { "d" => "é" } }
      got = client.submit_json(f, sent, timeout: 10)
      assert_equal({ "got" => decoded, "n" => 1.5, "s" => "é✓" }, got)
      assert_equal Encoding::UTF_8, got["s"].encoding
      assert_equal [decoded, f], Timeout.timeout(5) { seen.pop }
      # nil is sent as null
      assert_nil client.submit_json(g, [1, 2])
      assert_equal "null", client.submit(g, "[]")
      assert_equal 7, client.submit_json(f, 7)["got"]
      # data that is not JSON, or a result JSON cannot encode, fails the job
      e = assert_raises(Polygear::JobException) { client.submit(f, "not json") }
      assert_match(/the data of job H:\S+ for '#{f}' is not JSON/, e.worker_message)
      e = assert_raises(Polygear::JobException) { client.submit_json(nan, 1) }
      assert_match(/cannot be encoded as JSON/, e.worker_message)
      # what the client cannot encode
      e = assert_raises(ArgumentError) { client.submit_json(f, Float::NAN) }
      assert_match(/the data for '#{f}' cannot be encoded as JSON/, e.message)
    end
    h = on(fname("plain")) { |_job| "plain text" }
    with_worker do
      e = assert_raises(Polygear::ProtocolError) { client.submit_json(h, {}) }
      assert_match(/the result of '#{h}' is not JSON: .*is the worker registered with json: true\?/, e.message)
    end
  end
end
