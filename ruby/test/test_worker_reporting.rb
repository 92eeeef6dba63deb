# frozen_string_literal: true

require_relative "helper"
require "logger"
require "stringio"

# How a worker reports trouble: its Logger, the on_error hook, the result
# rule and gearman-ruby's add_ability (SIGTERM: test_interop.rb).
class TestWorkerReporting < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Embedded.instance

  def test_default_logger_writes_a_raising_block_with_its_backtrace_to_stderr
    f = fname("boom")
    err = StringIO.new
    worker = begin
      $stderr = err
      Polygear::Worker.new(servers: [server.address])
    ensure
      $stderr = STDERR
    end
    assert_equal Logger::WARN, worker.logger.level
    assert_equal "polygear", worker.logger.progname
    worker.register(f) { |_job| raise KeyError, "no such key" }
    thread = Thread.new { worker.work }
    e = assert_raises(Polygear::JobException) { client.submit(f, "x") }
    assert_equal "no such key", e.worker_message
    worker.stop
    assert thread.join(10)
    log = err.string
    assert_match(/ERROR -- polygear: job #{Regexp.escape(e.handle)} of '#{f}' raised KeyError: no such key/, log)
    assert_includes log, "#{__FILE__}:", "the backtrace is logged"
  end

  def test_a_given_logger_and_the_on_error_hooks_see_the_exception
    out = StringIO.new
    seen = Queue.new
    f = on(fname("hook")) { |job| raise ArgumentError, "bad #{job.data}" }
    hook = ->(job, exc) { seen << [:keyword, job.handle, exc] }
    with_worker(logger: Logger.new(out), on_error: hook) do
      e = assert_raises(Polygear::JobException) { client.submit(f, "input") }
      kind, handle, exc = Timeout.timeout(5) { seen.pop }
      assert_equal [:keyword, e.handle], [kind, handle]
      assert_instance_of ArgumentError, exc
      assert_equal "bad input", exc.message
    end
    assert_match(/ERROR -- : job H:\S+ of '#{f}' raised ArgumentError: bad input/, out.string)

    g = on(fname("hook2")) { |_job| raise "second" }
    with_worker(logger: Logger.new(out)) do |worker|
      worker.on_error { |job, exc| seen << [:block, job.function, exc.message] }
      assert_raises(Polygear::JobException) { client.submit(g, "x") }
      assert_equal [:block, g, "second"], Timeout.timeout(5) { seen.pop }
      # a hook that raises is logged, and the worker goes on
      worker.on_error { |_job, _exc| raise IOError, "hook broke" }
      assert_raises(Polygear::JobException) { client.submit(g, "x") }
    end
    assert_match(/the on_error hook raised IOError: hook broke/, out.string)
    assert_raises(TypeError) { Polygear::Worker.new(servers: [server.address], on_error: 42) }
  end

  def test_result_rule_string_passes_nil_is_empty_other_objects_fail_naming_the_class
    binary = "\x00\xFF\x80".b
    f = on(fname("res")) do |job|
      case job.data
      when "hash" then { w: 1 }
      when "nil" then nil
      when "sym" then :done
      else binary
      end
    end
    with_worker do
      assert_equal binary, client.submit(f, "bin")
      assert_equal "", client.submit(f, "nil")
      e = assert_raises(Polygear::JobException) { client.submit(f, "hash") }
      assert_equal "worker block returned Hash; return a String or nil (or register with json: true)",
                   e.worker_message
      e = assert_raises(Polygear::JobException) { client.submit(f, "sym") }
      assert_match(/returned Symbol/, e.worker_message)
    end
  end

  def test_add_ability_is_gearman_rubys_register_with_data_and_job
    f = fname("ability")
    with_worker do |worker|
      assert_same worker, worker.add_ability(f) { |data, job|
        job.report_status(1, 2).report_warning("w")
        "#{data.upcase}:#{job.function}"
      }
      events = []
      assert_equal "ABC:#{f}", client.submit(f, "abc") { |ev| events << ev }
      assert_equal [:status, :warning], events.map(&:type)
    end
    w = Polygear::Worker.new(servers: [server.address])
    assert_raises(ArgumentError) { w.add_ability("x") }
  end
end
