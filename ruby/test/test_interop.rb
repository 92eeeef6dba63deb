# frozen_string_literal: true

require_relative "helper"
require "open3"
require "rbconfig"

# Ruby <-> other Gearman peers: the C `gearman` CLI, the Rust `polygear`
# CLI, and a Ruby worker process stopped by a signal.
class TestInterop < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Gearmand.instance

  def gearman_bin
    ENV["GEARMAN"] || PolygearTest.which("gearman") || skip("the C gearman CLI is not installed (gearman-tools)")
  end

  def polygear_cli
    dir = ENV["POLYGEAR_BIN_DIR"]
    path = dir && File.join(dir, "polygear")
    return path if path && File.executable?(path)

    skip("the Rust polygear CLI is not built (cargo build -p polygear-cli; set POLYGEAR_BIN_DIR to its directory)")
  end

  def spawn_quiet(*cmd)
    Process.spawn(*cmd, in: File::NULL, out: File::NULL, err: File::NULL, pgroup: true)
  end

  def kill_wait(pid)
    Process.kill("TERM", pid)
    Timeout.timeout(5) { Process.wait(pid) }
  rescue Timeout::Error
    Process.kill("KILL", pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  # Runs a command with a deadline; kills it when the deadline passes.
  def run_cmd(*cmd, timeout: 15)
    out_r, out_w = IO.pipe
    pid = Process.spawn(*cmd, in: File::NULL, out: out_w, err: File::NULL, pgroup: true)
    out_w.close
    reader = Thread.new { out_r.read }
    Timeout.timeout(timeout) { Process.wait(pid) }
    [reader.value, $?]
  rescue Timeout::Error
    Process.kill("KILL", pid)
    Process.wait(pid)
    flunk("#{cmd.join(' ')} did not finish within #{timeout}s")
  ensure
    out_r&.close
  end

  def test_c_gearman_client_with_ruby_worker
    gm = gearman_bin
    f = on(fname("crev")) { |job| job.data.reverse }
    with_worker(concurrency: 2) do
      out, status = run_cmd(gm, "-h", "127.0.0.1", "-p", server.port.to_s, "-f", f, "hello gearman")
      assert status.success?, "gearman client exited with #{status.exitstatus}"
      assert_equal "namraeg olleh", out.chomp
      out, status = run_cmd(gm, "-h", "127.0.0.1", "-p", server.port.to_s, "-f", f, "-b", "background")
      assert status.success?
    end
    # NOTE: a Ruby exception is sent as WORK_EXCEPTION; gearmand 1.1.20 converts it to
    # WORK_FAIL+NUL for clients without the exceptions option, which the 1.1.20 `gearman`
    # CLI never matches (it hangs; same with a raw WORK_EXCEPTION from any worker). The
    # conversion itself is tested with `exceptions: false` in api_tests.rb.
  end

  def test_ruby_client_with_c_gearman_worker
    gm = gearman_bin
    f = fname("cwrk")
    pid = spawn_quiet(gm, "-h", "127.0.0.1", "-p", server.port.to_s, "-w", "-f", f, "--", "rev")
    begin
      assert_equal "olleh", client.submit(f, "hello\n", timeout: 15).chomp
    ensure
      kill_wait(pid)
    end
  end

  def test_ruby_client_with_rust_worker
    cli = polygear_cli
    [server, PolygearTest::Embedded.instance].each do |srv|
      f = fname("rustw")
      pid = spawn_quiet(cli, "-h", "127.0.0.1", "-p", srv.port.to_s, "-w", "-f", f, "--", "rev")
      begin
        c = Polygear::Client.new(servers: [srv.address], timeout: 15)
        assert_equal "dlrow olleh", c.submit(f, "hello world\n").chomp
        c.close
      ensure
        kill_wait(pid)
      end
    end
  end

  def test_sigterm_stops_a_ruby_worker_gracefully
    f = fname("sig")
    script = <<~RUBY
      require "polygear"
      w = Polygear::Worker.new(servers: ["#{server.address}"])
      w.register("#{f}") { |job| $stdout.puts("started"); $stdout.flush; sleep 0.7; "graceful:" + job.data }
      n = w.work
      $stdout.puts("stopped after \#{n}")
    RUBY
    c = client
    Open3.popen3(RbConfig.ruby, "-I", PolygearTest.lib_dir, "-e", script) do |stdin, stdout, stderr, wait|
      stdin.close
      submitter = Thread.new { c.submit(f, "x") }
      assert_equal "started", Timeout.timeout(20) { stdout.gets }&.chomp
      Process.kill("TERM", wait.pid)
      assert_equal "graceful:x", submitter.value
      assert_equal "stopped after 1", Timeout.timeout(10) { stdout.gets }&.chomp
      assert Timeout.timeout(10) { wait.value }.success?
      # the default Logger (stderr, WARN) says why the worker stopped
      assert_match(/WARN -- polygear: received SIGTERM: finishing running jobs, taking no new ones/, stderr.read)
    end
  end
end
