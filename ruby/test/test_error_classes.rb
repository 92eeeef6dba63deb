# frozen_string_literal: true

require_relative "helper"

# The exception hierarchy and the errors that say what to do.
class TestErrorClasses < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Embedded.instance

  CLASSES = {
    Polygear::ConnectionError => IOError,
    Polygear::TimeoutError => Timeout::Error,
    Polygear::ProtocolError => StandardError,
    Polygear::ServerError => StandardError,
    Polygear::JobFailed => StandardError,
    Polygear::JobException => StandardError,
    Polygear::ClosedError => StandardError
  }.freeze

  def test_every_class_is_a_polygear_error_and_its_ruby_kind
    assert_instance_of Module, Polygear::Error
    CLASSES.each do |klass, parent|
      assert_operator klass, :<, parent
      assert_operator klass, :<, Polygear::Error
      assert_operator klass, :<, StandardError
    end
  end

  def test_generic_rescues_catch_timeouts_and_connection_errors
    caught = begin
      client.submit(fname("nobody"), "x", timeout: 0.2)
    rescue Timeout::Error => e
      e
    end
    assert_instance_of Polygear::TimeoutError, caught
    assert_equal "ETIMEDOUT", caught.code

    dead = Polygear::Client.new(servers: ["127.0.0.1:#{PolygearTest.free_port}"], connect_timeout: 2)
    caught = begin
      dead.submit("f", "x")
    rescue IOError => e
      e
    end
    assert_instance_of Polygear::ConnectionError, caught
    assert_equal "ECONNREFUSED", caught.code
    dead.close

    f = on(fname("boom")) { |_job| raise "boom" }
    with_worker do
      caught = begin
        client.submit(f, "x")
      rescue Polygear::Error => e
        e
      end
      assert_instance_of Polygear::JobException, caught
      assert_equal "EJOBEXCEPTION", caught.code
    end
  end

  def test_a_busy_port_says_it_is_in_use
    busy = TCPServer.new("127.0.0.1", 0)
    port = busy.addr[1]
    e = assert_raises(Polygear::ConnectionError) { Polygear::Server.new(port: port) }
    assert_match(/port #{port} on 127\.0\.0\.1 is already in use/, e.message)
    refute_match(/no server available/, e.message)
    assert_equal "EADDRINUSE", e.code
    assert_kind_of IOError, e
  ensure
    busy&.close
  end

  def test_empty_function_names_are_rejected
    c = client
    calls = {
      submit: -> { c.submit("", "x") },
      submit_job: -> { c.submit_job("", "x") },
      submit_background: -> { c.submit_background("", "x") },
      submit_many: -> { c.submit_many("", ["x"]) },
      submit_json: -> { c.submit_json("", {}) },
      register: -> { Polygear::Worker.new(servers: [server.address]).register("") { nil } },
      add_ability: -> { Polygear::Worker.new(servers: [server.address]).add_ability("") { nil } }
    }
    calls.each do |name, call|
      e = assert_raises(ArgumentError, name.to_s) { call.call }
      assert_equal "empty function name", e.message
    end
    Polygear::Admin.open(server.address) { |a| refute(a.status.any? { |s| s.function.empty? }) }
  end
end
