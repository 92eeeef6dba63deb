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
end
