# frozen_string_literal: true

require_relative "helper"
require "fileutils"
require "open3"
require "pathname"
require "tmpdir"

# TLS: Client, Worker and Admin against Polygear::Server.new(tls: ...).
# Certificates are made with the openssl CLI (scripts/make-test-certs.sh) in
# a temporary folder: a CA, a server certificate for 127.0.0.1/localhost, a
# client certificate, another CA's client certificate and an expired server
# certificate.
class TestTls < Minitest::Test
  include PolygearTest::Helpers

  REPO = File.expand_path("../..", __dir__)

  def self.certs
    @certs ||= begin
      dir = Dir.mktmpdir("pg-ruby-tls-")
      Minitest.after_run { FileUtils.rm_rf(dir) }
      out, status = Open3.capture2e(File.join(REPO, "scripts", "make-test-certs.sh"), dir)
      raise "make-test-certs.sh failed: #{out}" unless status.success?

      dir
    end
  end

  def setup
    skip("the openssl CLI is not installed") unless PolygearTest.which("openssl")
    @dir = self.class.certs
    @servers = []
  end

  def teardown
    @servers.each(&:stop)
    super
  end

  def file(name) = File.join(@dir, name)

  def trust(client = nil, ca: "ca")
    tls = { ca_file: file("#{ca}.pem") }
    tls.update(cert_file: file("#{client}.pem"), key_file: file("#{client}.key")) if client
    tls
  end

  def tls_server(cert: "server", verify_clients: false)
    tls = { cert_file: file("#{cert}.pem"), key_file: Pathname.new(file("#{cert}.key")) }
    tls.update(ca_file: file("ca.pem"), verify_clients: true) if verify_clients
    @server = Polygear::Server.new(tls: tls)
    @servers << @server
    @server
  end

  attr_reader :server

  def reverse_worker(tls)
    on(f = fname("rev")) { |job| job.data.reverse }
    with_worker(tls: tls) { yield f }
  end

  def test_job_round_trip_and_admin_over_tls
    tls_server
    reverse_worker(trust) do |f|
      c = client(tls: trust)
      assert_equal "SLT revo", c.submit(f, "over TLS")
      big = Random.new(1).bytes(1 << 20)
      assert_equal big.reverse, c.submit(f, big)
      assert_equal "cba", client(tls: trust.merge(server_name: "localhost")).submit(f, "abc")
      Polygear::Admin.open(server.address, tls: trust) do |admin|
        assert(admin.status.any? { |s| s.function == f && s.workers >= 1 })
      end
    end
  end

  def test_tls_true_reads_libgearmans_variables_with_mutual_tls
    tls_server(verify_clients: true)
    vars = { "GEARMAND_CA_CERTIFICATE" => file("ca.pem"), "GEARMAN_CLIENT_PEM" => file("client.pem"),
             "GEARMAN_CLIENT_KEY" => file("client.key") }
    saved = vars.keys.to_h { |k| [k, ENV.fetch(k, nil)] }
    vars.each { |k, v| ENV[k] = v }
    begin
      reverse_worker(true) do |f|
        assert_equal "vne", client(tls: true).submit(f, "env")
        Polygear::Admin.open(server.address, tls: true) { |a| refute_empty a.version }
      end
    ensure
      saved.each { |k, v| ENV[k] = v }
    end
  end

  def test_mutual_tls_needs_a_client_certificate_from_the_ca
    tls_server(verify_clients: true)
    reverse_worker(trust("client")) do |f|
      assert_equal "sltm", client(tls: trust("client")).submit(f, "mtls")
      [trust, trust("stranger")].each do |tls|
        e = assert_raises(Polygear::ConnectionError) { Polygear::Admin.new(server.address, tls: tls).status }
        assert_match(/certificate/, e.message)
        c = client(tls: tls, connect_timeout: 5, timeout: 10)
        e = assert_raises(Polygear::ConnectionError) { c.submit(f, "x") }
        assert_match(/certificate/, e.message)
      end
    end
  end

  def test_untrusted_misnamed_and_expired_server_certificates_are_refused
    tls_server
    [[trust(ca: "other-ca"), /TLS handshake failed.*UnknownIssuer/],
     [trust.merge(server_name: "gearman.example"), /not valid for name/]].each do |tls, reason|
      e = assert_raises(Polygear::ConnectionError) { Polygear::Admin.new(server.address, tls: tls) }
      assert_match reason, e.message
      c = client(tls: tls, connect_timeout: 5, timeout: 10)
      e = assert_raises(Polygear::ConnectionError) { c.submit("f", "x") }
      assert_match reason, e.message
    end
    tls_server(cert: "expired")
    e = assert_raises(Polygear::ConnectionError) { Polygear::Admin.new(server.address, tls: trust) }
    assert_match(/certificate expired/, e.message)
  end

  def test_a_plain_client_on_the_tls_port_fails_quickly
    tls_server
    started = monotonic
    c = client(connect_timeout: 5, timeout: 10)
    e = assert_raises(Polygear::Error) { c.submit("f", "x") }
    assert_match(/TLS/, e.message)
    assert_operator monotonic - started, :<, 10
  end

  def test_a_missing_file_is_an_argument_error_naming_it
    missing = file("nope.pem")
    [-> { Polygear::Client.new(servers: ["127.0.0.1:1"], tls: { ca_file: missing }) },
     -> { Polygear::Worker.new(servers: ["127.0.0.1:1"], tls: { ca_file: Pathname.new(missing) }) },
     -> { Polygear::Admin.new("127.0.0.1:1", tls: { ca_file: missing }) },
     lambda {
       Polygear::Client.new(tls: { ca_file: file("ca.pem"), cert_file: missing, key_file: file("client.key") })
     }].each do |make|
      e = assert_raises(ArgumentError) { make.call }
      assert_includes e.message, missing
    end
    e = assert_raises(ArgumentError) { Polygear::Server.new(tls: { cert_file: missing, key_file: file("server.key") }) }
    assert_includes e.message, missing
  end

  def test_the_tls_option_is_checked
    assert_raises(TypeError) { Polygear::Client.new(tls: "yes") }
    e = assert_raises(ArgumentError) { Polygear::Client.new(tls: { cafile: "x" }) }
    assert_match(/unknown tls key\(s\) :cafile/, e.message)
    e = assert_raises(ArgumentError) { Polygear::Client.new(tls: { cert_file: "c.pem" }) }
    assert_match(/cert_file and key_file together/, e.message)
    assert_raises(ArgumentError) { Polygear::Server.new(tls: { cert_file: "c.pem" }) }
    assert_raises(ArgumentError) { Polygear::Server.new(tls: { cert_file: "c", key_file: "k", verify_clients: true }) }
    Polygear::Client.new(tls: false).close
  end
end
