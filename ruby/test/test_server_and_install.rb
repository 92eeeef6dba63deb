# frozen_string_literal: true

require_relative "helper"

# Polygear::Server's own API, and (under scripts/test-ruby.sh) that the
# installed gem is what was loaded.
class TestServerAndInstall < Minitest::Test
  include PolygearTest::Helpers

  def test_embedded_server_start_address_stop
    port = nil
    Polygear::Server.start do |srv|
      port = srv.port
      assert_operator port, :>, 0
      assert_equal "127.0.0.1:#{port}", srv.address
      assert srv.running?
      c = Polygear::Client.new(servers: [srv.address])
      assert_equal "hi", c.echo("hi")
      c.close
    end
    c = Polygear::Client.new(servers: ["127.0.0.1:#{port}"], connect_timeout: 2)
    assert_raises(Polygear::ConnectionError) { c.echo("gone") }
    c.close
  end

  def test_embedded_server_on_a_fixed_port_and_stop_is_idempotent
    port = PolygearTest.free_port
    srv = Polygear::Server.new(port: port)
    assert_equal port, srv.port
    PolygearTest.wait_port(port)
    srv.stop
    srv.stop
    refute srv.running?
    assert_raises(ArgumentError) { Polygear::Server.new(port: 70_000) }
  end

  def test_build_profile_says_how_the_extension_was_compiled
    assert_includes %w[release debug], Polygear::BUILD_PROFILE
    assert Polygear::BUILD_PROFILE.frozen?
  end

  def test_loaded_from_the_installed_gem
    skip("set POLYGEAR_TEST_INSTALLED=1 to check the installed gem") unless ENV["POLYGEAR_TEST_INSTALLED"] == "1"
    spec = Gem.loaded_specs["polygear"] || Gem::Specification.find_by_name("polygear")
    assert_equal Polygear::VERSION, spec.version.to_s
    rb = $LOADED_FEATURES.find { |f| f.end_with?("/polygear.rb") }
    assert rb.start_with?(spec.full_gem_path), "polygear.rb loaded from #{rb}, not #{spec.full_gem_path}"
    ext = $LOADED_FEATURES.find { |f| f.end_with?("/polygear_ext.so") }
    assert ext.start_with?(spec.extension_dir) || ext.start_with?(spec.full_gem_path),
           "extension loaded from #{ext}"
    %w[core/Cargo.toml server/Cargo.toml bindings/ruby/Cargo.toml ruby/ext/polygear/extconf.rb].each do |f|
      assert File.file?(File.join(spec.full_gem_path, f)), "gem lacks #{f}"
    end
  end

  # A block that ends after its server died cannot deliver the result (the
  # server hands the job out again); the worker goes on and serves the
  # restarted server.
  def test_worker_survives_its_server_dying_mid_job
    port = PolygearTest.free_port
    srv = Polygear::Server.new(port: port)
    started = Queue.new
    release = Queue.new
    worker = Polygear::Worker.new(servers: ["127.0.0.1:#{port}"], concurrency: 2)
    worker.register("die_mid_job") do |job|
      started << job.data
      release.pop
      "r#{job.data}"
    end
    thread = Thread.new { worker.work }
    thread.report_on_exception = false
    Polygear::Client.new(servers: ["127.0.0.1:#{port}"], timeout: 10).submit_background("die_mid_job", "1")
    assert_equal "1", Timeout.timeout(10) { started.pop }
    srv.stop
    srv = Polygear::Server.new(port: port)
    2.times { release << true }
    assert_equal "r2", Polygear::Client.new(servers: ["127.0.0.1:#{port}"], timeout: 10).submit("die_mid_job", "2")
    assert thread.alive?, "the worker stopped"
  ensure
    worker&.stop
    assert thread.join(15), "work did not return after stop" if thread
    srv&.stop
  end
end
