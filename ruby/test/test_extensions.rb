# frozen_string_literal: true

require_relative "helper"

# polygeard's extensions (issue #19) through the Ruby API: retries and the
# dead set, retained results, cancellation, pause/drain, unique windows and
# periodic jobs. A server of its own, so the dead set, paused functions and
# drained workers of these tests stay out of the others' way.
class TestExtensions < Minitest::Test
  include PolygearTest::Helpers

  def self.server
    @server ||= Polygear::Server.new.tap { |s| Minitest.after_run { s.stop } }
  end

  def server = self.class.server

  def admin
    @admin ||= Polygear::Admin.new(server.address)
  end

  def teardown
    @admin&.close
    super
  end

  def within(seconds, &block) = Timeout.timeout(seconds, &block)

  # Polls the block until it returns a truthy value (returned), or fails
  # after +seconds+.
  def eventually(seconds = 10, what = "the condition")
    deadline = monotonic + seconds
    loop do
      value = yield
      return value if value

      flunk("#{what} not met within #{seconds} s") if monotonic > deadline
      sleep 0.02
    end
  end

  # Asserts the block stays falsy for +seconds+ (for "nothing is handed out").
  def stays_false(seconds)
    deadline = monotonic + seconds
    while monotonic < deadline
      refute yield
      sleep 0.02
    end
  end

  # --- retries and the dead set -----------------------------------------

  def test_retry_policy_retries_until_the_job_completes
    runs = Queue.new
    f = on(fname("flaky")) do |job|
      runs << job.handle
      raise "flaky failure #{runs.size}" if runs.size < 3

      "made it"
    end
    assert_nil admin.set_retry_policy(f, 3, 0.02)
    policy = admin.retry_policies.find { |p| p.function == f }
    assert_equal Polygear::Admin::RetryPolicy.new(f, 3, 0.02, 3600.0), policy
    admin.set_retry_policy(f, 3, 0.02, 0.5)
    assert_equal 0.5, admin.retry_policies.find { |p| p.function == f }.max_delay

    with_worker do
      handle = client.submit_background(f, "x", retain: 30)
      assert_equal "made it", eventually(10, "the retained result") { client.result(handle) }
      assert_equal [handle] * 3, Array.new(3) { runs.pop }
      assert_equal [], admin.dead_jobs(f)
    end
    admin.set_retry_policy(f, 0, 0)
    assert_nil admin.retry_policies.find { |p| p.function == f }
  end

  def test_exhausted_attempts_go_to_the_dead_set_then_retry_or_delete
    healthy = false
    done = Queue.new
    f = on(fname("doomed")) do |job|
      raise ArgumentError, "doomed \u2620 #{job.data.bytesize}" unless healthy

      done << job.data
      "ok"
    end
    admin.set_retry_policy(f, 2, 0.01)
    t0 = Time.now.to_i
    with_worker do
      handle = client.submit_background(f, "d\x00\xFF".b, unique: "uniq-1")
      dead = eventually(10, "a dead record") { admin.dead_jobs(f).first }
      assert_instance_of Polygear::Admin::DeadJob, dead
      assert_equal handle, dead.handle
      assert_equal f, dead.function
      assert_equal "uniq-1".b, dead.unique
      assert_equal "d\x00\xFF".b, dead.data
      assert_equal Encoding::ASCII_8BIT, dead.data.encoding
      assert_equal 2, dead.attempts
      assert_includes dead.error, "doomed"
      assert_includes dead.error, "3"
      assert_kind_of Time, dead.submitted
      assert_kind_of Time, dead.failed_at
      assert_operator dead.submitted.to_i, :>=, t0 - 1
      assert_operator dead.failed_at, :>=, dead.submitted
      assert_includes admin.dead_jobs.map(&:handle), handle

      # retry_dead requeues it as a fresh job, which now succeeds
      healthy = true
      assert_equal 1, admin.retry_dead(f)
      assert_equal "d\x00\xFF".b, within(10) { done.pop }
      assert_equal [], admin.dead_jobs(f)

      # another one dies; delete_dead forgets it
      healthy = false
      client.submit_background(f, "again")
      eventually(10, "the second dead record") { admin.dead_jobs(f).size == 1 }
      assert_equal 1, admin.delete_dead(f)
      assert_equal [], admin.dead_jobs(f)

      # one at a time by handle
      h3 = client.submit_background(f, "third")
      eventually(10, "the third dead record") { admin.dead_jobs(f).size == 1 }
      refute admin.retry_dead_job("H:nowhere:1")
      refute admin.delete_dead_job("H:nowhere:1")
      assert admin.delete_dead_job(h3)
      assert_equal [], admin.dead_jobs(f)
      assert_equal 0, admin.retry_dead(f)

      # the whole set (this server's dead jobs are this test's only)
      client.submit_background(f, "fourth")
      eventually(10, "the fourth dead record") { admin.dead_jobs.size == 1 }
      healthy = true
      assert_equal 1, admin.retry_all_dead
      assert_equal "fourth", within(10) { done.pop }
      healthy = false
      client.submit_background(f, "fifth")
      eventually(10, "the fifth dead record") { admin.dead_jobs.size == 1 }
      assert_equal 1, admin.delete_all_dead
      assert_equal [], admin.dead_jobs
      assert_equal 0, admin.delete_all_dead
    end
  end

  def test_retry_policy_arguments_are_checked
    f = fname("args")
    assert_raises(ArgumentError) { admin.set_retry_policy(f, 3, -1) }
    assert_raises(ArgumentError) { admin.set_retry_policy(f, 3, Float::NAN) }
    assert_raises(ArgumentError) { admin.set_retry_policy(f, -1, 1) }
    assert_raises(TypeError) { admin.set_retry_policy(f, "3", 1) }
    assert_raises(TypeError) { admin.set_retry_policy(f, 3, nil) }
    assert_raises(TypeError) { admin.drain_worker(1.5) }
  end

  # --- retained results --------------------------------------------------

  def test_retained_result_is_nil_until_the_job_completes
    started = Queue.new
    release = Queue.new
    f = on(fname("kept")) do |job|
      raise "failing as asked" if job.data == "fail"

      started << true
      within(10) { release.pop }
      "result \x00".b + job.data
    end
    c = client
    handle = c.submit_background(f, "payload", retain: 30)
    assert_nil c.result(handle) # queued
    assert_equal [:queued, nil], c.result_state(handle)
    with_worker do
      within(10) { started.pop }
      assert_nil c.result(handle) # running
      assert_equal :running, c.result_state(handle).first
      release << true
      result = eventually(10, "the result") { c.result(handle) }
      assert_equal "result \x00payload".b, result
      assert_equal Encoding::ASCII_8BIT, result.encoding
      assert_equal [:complete, "result \x00payload".b], c.result_state(handle)

      failing = c.submit_background(f, "fail", retain: 30)
      err = eventually(10, "the failure") do
        c.result(failing)
        nil
      rescue Polygear::JobException => e
        e
      end
      assert_equal failing, err.handle
      assert_includes err.worker_message, "failing as asked"
      assert_equal :exception, c.result_state(failing).first
    end
    assert_nil c.result("H:nowhere:1")
    assert_equal :unknown, c.result_state("H:nowhere:1").first
    assert_raises(ArgumentError) { c.submit_background(f, "x", retain: 0) }
    assert_raises(ArgumentError) { c.submit_background(f, "x", retain: -1) }
    assert_raises(TypeError) { c.submit_background(f, "x", retain: "1") }
  end

  def test_retention_per_function_via_admin
    f = on(fname("retained")) { |job| job.data.upcase }
    assert_nil admin.set_retention(f, 60)
    assert_equal 60.0, admin.retention[f]
    with_worker do
      handle = client.submit_background(f, "abc")
      assert_equal "ABC", eventually(10, "the result") { client.result(handle) }
    end
    admin.set_retention(f, 0)
    refute admin.retention.key?(f)
  end

  # --- unique windows ----------------------------------------------------

  def test_unique_window_coalesces_resubmissions
    runs = 0
    f = on(fname("window")) do |job|
      runs += 1
      "run #{runs} of #{job.data}"
    end
    assert_nil admin.set_unique_window(f, 30)
    assert_equal 30.0, admin.unique_windows[f]
    with_worker do
      assert_equal "run 1 of a", client.submit(f, "a", unique: "same-key")
      assert_equal "run 1 of a", client.submit(f, "b", unique: "same-key")
      assert_equal "run 2 of c", client.submit(f, "c", unique: "other-key")
    end
    assert_equal 2, runs
    admin.set_unique_window(f, 0)
    refute admin.unique_windows.key?(f)
  end

  # --- cancellation --------------------------------------------------------

  def test_cancel_a_queued_job_fails_its_waiting_client_with_job_cancelled
    f = fname("queued") # no worker: it stays queued
    c = client
    job = c.submit_job(f, "x")
    assert c.cancel(job.handle)
    err = assert_raises(Polygear::JobCancelled) { within(10) { job.result } }
    assert_kind_of Polygear::JobFailed, err
    assert_kind_of Polygear::Error, err
    assert_equal "ECANCELED", err.code
    assert_equal job.handle, err.handle
    assert_match(/cancel/, err.message)
    refute c.cancel(job.handle) # gone now
    refute c.cancel("H:nowhere:1")
    refute c.status(job.handle).known?
  end

  def test_running_job_sees_cancelled_and_its_client_gets_job_cancelled
    started = Queue.new
    seen = Queue.new
    f = on(fname("long")) do |job|
      started << job.cancelled?
      cancelled = false
      deadline = monotonic + 10
      until (cancelled = job.cancelled?) || monotonic > deadline
        sleep 0.05
      end
      seen << cancelled
      nil
    end
    with_worker do
      job = client.submit_job(f, "x")
      assert_equal false, within(10) { started.pop }
      assert client.cancel(job.handle)
      assert_raises(Polygear::JobCancelled) { within(10) { job.result } }
      assert_equal true, within(10) { seen.pop }
    end
  end

  def test_cancelled_probe_and_job_updates_from_two_threads
    f = on(fname("probe")) do |job|
      probes = Thread.new { Array.new(20) { job.cancelled? } }
      20.times { |i| job.send_status(i + 1, 20) }
      probes.value.any? ? "cancelled?" : "ok"
    end
    with_worker do
      statuses = []
      assert_equal "ok", client.submit(f, "x") { |ev| statuses << ev.numerator if ev.type == :status }
      assert_equal (1..20).to_a, statuses
    end
  end

  def test_cancelled_on_a_finished_job_raises_closed_error
    kept = Queue.new
    f = on(fname("finished")) do |job|
      kept << job
      "ok"
    end
    with_worker do
      assert_equal "ok", client.submit(f, "x")
      job = within(5) { kept.pop }
      within(5) { sleep 0.01 until job.finished? }
      assert_raises(Polygear::ClosedError) { job.cancelled? }
    end
  end

  # --- pause and drain -----------------------------------------------------

  def test_pause_holds_jobs_until_resume
    ran = Queue.new
    f = on(fname("paused")) { |job| ran << job.data }
    assert_nil admin.pause(f)
    assert_includes admin.paused, f
    with_worker do
      client.submit_background(f, "waits")
      stays_false(0.3) { !ran.empty? }
      row = admin.status.find { |s| s.function == f }
      assert_equal [1, 0], [row.total, row.running]
      assert_nil admin.resume(f)
      refute_includes admin.paused, f
      assert_equal "waits", within(10) { ran.pop }
    end
  end

  def test_drain_worker_by_client_id_and_fd
    ran = Queue.new
    id = "drain-#{rand(1 << 30)}"
    f = on(fname("drained")) { |job| ran << job.data }
    with_worker(client_id: id) do
      client.submit_background(f, "first")
      assert_equal "first", within(10) { ran.pop }
      fd = eventually(10, "the worker row") { admin.workers.find { |w| w.client_id == id } }.fd
      assert_equal 1, admin.drain_worker(id)
      assert_equal [Polygear::Admin::DrainingWorker.new(fd, id)],
                   admin.draining.select { |d| d.client_id == id }
      assert_equal 1, admin.drain_worker(fd)
      client.submit_background(f, "never")
      stays_false(0.3) { !ran.empty? }
      err = assert_raises(Polygear::ServerError) { admin.drain_worker("nobody-#{rand(1 << 30)}") }
      assert_equal "UNKNOWN_WORKER", err.code
    end
  end

  # --- periodic jobs -------------------------------------------------------

  def test_schedule_add_list_fire_and_delete
    fired = Queue.new
    f = on(fname("tick")) { |job| fired << [job.unique, job.data] }
    name = "sched-#{rand(1 << 30)}"
    with_worker do
      assert_nil admin.schedule_add(name, "* * * * * *", f, "tick tock")
      sched = admin.schedules.find { |s| s.name == name }
      assert_instance_of Polygear::Admin::Schedule, sched
      assert_equal [f, "* * * * * *", "tick tock"], [sched.function, sched.cron, sched.data]
      assert_kind_of Time, sched.next
      unique, data = within(10) { fired.pop }
      assert_match(/\A#{name}@\d+\z/, unique)
      assert_equal "tick tock", data
      assert_nil admin.schedule_delete(name)
      assert_nil(admin.schedules.find { |s| s.name == name })
      err = assert_raises(Polygear::ServerError) { admin.schedule_delete(name) }
      assert_equal "UNKNOWN_SCHEDULE", err.code
      err = assert_raises(Polygear::ServerError) { admin.schedule_add(name, "not a cron", f) }
      assert_equal "INVALID_SCHEDULE", err.code
    end
  end

  # --- Polygear::Server's start-up settings ---------------------------------

  def test_embedded_server_takes_the_extension_settings
    Polygear::Server.start(retry: { "fa" => [4, 0.5, 10], "fb" => [2, 1] }, retain: { "fb" => 120 },
                           unique_window: { "fc" => 30 },
                           schedules: [["nightly", "0 3 * * *", "report", "full"], ["hourly", "@hourly", "tick"]]) do |s|
      Polygear::Admin.open(s.address) do |a|
        assert_equal [Polygear::Admin::RetryPolicy.new("fa", 4, 0.5, 10.0),
                      Polygear::Admin::RetryPolicy.new("fb", 2, 1.0, 3600.0)], a.retry_policies
        assert_equal({ "fb" => 120.0 }, a.retention)
        assert_equal({ "fc" => 30.0 }, a.unique_windows)
        assert_equal [%w[hourly tick @hourly] + [""], ["nightly", "report", "0 3 * * *", "full"]],
                     a.schedules.map { |x| [x.name, x.function, x.cron, x.data] }
        assert(a.schedules.all? { |x| x.next.is_a?(Time) && x.last_fired.nil? })
      end
    end
    assert_raises(ArgumentError) { Polygear::Server.new(schedules: [%w[bad not-a-cron f]]) }
    assert_raises(ArgumentError) { Polygear::Server.new(retry: { "f" => [2, -1] }) }
    assert_raises(TypeError) { Polygear::Server.new(retry: { "f" => "3" }) }
    assert_raises(TypeError) { Polygear::Server.new(retain: { "f" => 1.5 }) }
    assert_raises(TypeError) { Polygear::Server.new(schedules: "x") }
  end

  def test_job_cancelled_is_a_job_failed
    assert_operator Polygear::JobCancelled, :<, Polygear::JobFailed
    assert_includes Polygear::JobCancelled.ancestors, Polygear::Error
  end
end

# The extensions against the C gearmand: clear ServerErrors; cancellation
# of queued jobs works there too.
class TestExtensionsGearmand < Minitest::Test
  include PolygearTest::Helpers

  def server = PolygearTest::Gearmand.instance

  def within(seconds, &block) = Timeout.timeout(seconds, &block)

  def test_retained_results_are_refused_with_a_server_error
    c = client
    err = assert_raises(Polygear::ServerError) { c.submit_background(fname("r"), "x", retain: 10) }
    assert_match(/polygeard|not supported|support/i, err.message)
    err = assert_raises(Polygear::ServerError) { c.result("H:nowhere:1") }
    assert_match(/polygeard|not supported|support/i, err.message)
  end

  def test_admin_extensions_are_unknown_commands
    Polygear::Admin.open(server.address) do |admin|
      err = assert_raises(Polygear::ServerError) { admin.set_retry_policy("f", 3, 1) }
      assert_equal "UNKNOWN_COMMAND", err.code
      err = assert_raises(Polygear::ServerError) { admin.dead_jobs }
      assert_equal "UNKNOWN_COMMAND", err.code
      err = assert_raises(Polygear::ServerError) { admin.pause("f") }
      assert_equal "UNKNOWN_COMMAND", err.code
    end
  end

  def test_cancel_of_an_unknown_handle_is_false
    refute client.cancel("H:nowhere:1")
  end

  def test_cancel_of_a_queued_background_job
    c = client
    handle = c.submit_background(fname("queued"), "x") # no worker: stays queued
    assert c.status(handle).known?
    assert c.cancel(handle)
    # gearmand keeps a cancelled job listed, marked to be dropped when grabbed
    row = Polygear::Admin.open(server.address) { |a| a.show_jobs.find { |j| j.handle == handle } }
    assert row.ignore
  end

  def test_cancelled_stays_false_for_a_running_job
    seen = Queue.new
    f = on(fname("running")) do |job|
      seen << job.cancelled?
      "done"
    end
    with_worker do
      assert_equal "done", client.submit(f, "x")
      assert_equal false, within(5) { seen.pop }
    end
  end
end
