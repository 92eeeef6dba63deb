# frozen_string_literal: true

require_relative "helper"

# The whole Ruby API, run against each job server (see test_api.rb).
module ApiTests
  include PolygearTest::Helpers

  def within(seconds, &block) = Timeout.timeout(seconds, &block)

  # --- Client + Worker -------------------------------------------------

  def test_submit_round_trip_is_binary_safe
    f = on(fname("rev")) { |job| job.data.reverse }
    with_worker do
      payload = ((0..255).map(&:chr).join * 4).b + "\x00\xFF\x00".b
      result = client.submit(f, payload)
      assert_equal payload.reverse, result
      assert_equal Encoding::ASCII_8BIT, result.encoding
      utf8 = "héllo wörld ✓"
      assert_equal utf8.b.reverse, client.submit(f, utf8)
      assert_equal "", client.submit(f, "")
    end
  end

  def test_large_payload
    f = on(fname("size")) { |job| "#{job.data.bytesize}:#{job.data[-5, 5]}" }
    with_worker do
      big = Random.new(7).bytes(1 << 20)
      assert_equal "#{big.bytesize}:#{big[-5, 5]}".b, client.submit(f, big)
    end
  end

  def test_job_attributes_and_result_conversion
    seen = Queue.new
    f = on(fname("attrs")) do |job|
      seen << [job.handle, job.unique, job.function, job.data, job.data.encoding]
      nil
    end
    g = on(fname("num")) { |job| job.data.size * 2 }
    with_worker do
      assert_equal "", client.submit(f, "payload", unique: "u-42")
      handle, unique, function, data, enc = within(5) { seen.pop }
      assert_match(/\AH:/, handle)
      assert_equal "u-42", unique
      assert_equal f, function
      assert_equal "payload", data
      assert_equal Encoding::ASCII_8BIT, enc
      # a result that is neither a String nor nil fails the job, naming its class
      err = assert_raises(Polygear::JobException) { client.submit(g, "abcd") }
      assert_equal "worker block returned Integer; return a String or nil (or register with json: true)",
                   err.worker_message
    end
  end

  def test_block_form_receives_data_warning_and_status_events
    f = on(fname("events")) do |job|
      job.send_data("chunk-1")
      job.send_warning("careful\x00".b)
      job.send_status(1, 4)
      job.send_data("chunk-2")
      "final"
    end
    with_worker do
      events = []
      result = client.submit(f, "x") { |ev| events << ev }
      assert_equal "final", result
      assert_equal [[:data, "chunk-1"], [:warning, "careful\x00".b], [:status, [1, 4]], [:data, "chunk-2"]],
                   events.map { |e| [e.type, e.type == :status ? [e.numerator, e.denominator] : e.data] }
      assert(events.all? { |e| e.is_a?(Polygear::JobEvent) })
    end
  end

  def test_exception_in_block_raises_job_exception_or_job_failed
    f = on(fname("boom")) { |_job| raise ArgumentError, "kaboom \u2620" }
    with_worker do
      err = assert_raises(Polygear::JobException) { client.submit(f, "x") }
      assert_equal "kaboom \u2620".b, err.worker_message.b
      assert_match(/\AH:/, err.handle)
      assert_kind_of Polygear::Error, err
      # a client without the exceptions option sees WORK_FAIL
      err = assert_raises(Polygear::JobFailed) { client(exceptions: false).submit(f, "y") }
      assert_match(/\AH:/, err.handle)
      # the block form raises the same way
      assert_raises(Polygear::JobException) { client.submit(f, "z") { |_ev| nil } }
    end
  end

  def test_worker_keeps_serving_after_an_exception
    f = on(fname("flaky")) { |job| job.data == "bad" ? raise("no") : "ok:#{job.data}" }
    with_worker do
      assert_raises(Polygear::JobException) { client.submit(f, "bad") }
      assert_equal "ok:good", client.submit(f, "good")
    end
  end

  def test_submit_many_returns_results_in_order_and_raises_or_returns_failures
    f = on(fname("many")) { |job| job.data == "bad" ? raise("no: #{job.data}") : "r:#{job.data}" }
    with_worker(concurrency: 4) do
      items = (1..200).map(&:to_s)
      results = client.submit_many(f, items, priority: :high)
      assert_equal(items.map { |i| "r:#{i}" }, results)
      assert(results.all? { |r| r.encoding == Encoding::ASCII_8BIT })
      assert_equal [], client.submit_many(f, [])
      err = assert_raises(Polygear::JobException) { client.submit_many(f, %w[a bad c]) }
      assert_equal "no: bad", err.worker_message
      mixed = client.submit_many(f, %w[a bad c], return_exceptions: true)
      assert_equal %w[r:a r:c], [mixed[0], mixed[2]]
      assert_kind_of Polygear::JobException, mixed[1]
      assert_match(/\AH:/, mixed[1].handle)
      assert_raises(TypeError) { client.submit_many(f, ["ok", 42]) }
      assert_raises(TypeError) { client.submit_many(f, 42) }
      assert_raises(ArgumentError) { client.submit_many(f, ["x"], priority: :urgent) }
    end
  end

  def test_background_job_and_status
    f = fname("bg")
    started = Queue.new
    release = Queue.new
    c = client
    handle = c.submit_background(f, "work")
    assert_match(/\AH:/, handle)
    st = c.status(handle)
    assert_instance_of Polygear::JobStatus, st
    assert st.known?
    refute st.running?
    on(f) do |job|
      job.send_status(3, 7)
      started << job.handle
      within(10) { release.pop }
      "done"
    end
    with_worker do
      assert_equal handle, within(10) { started.pop }
      st = nil
      within(5) do
        sleep 0.02 until (st = c.status(handle)).numerator == 3
      end
      assert st.known?
      assert st.running?
      assert_equal [3, 7], [st.numerator, st.denominator]
      assert_in_delta 3.0 / 7, st.progress
      release << true
      within(5) { sleep 0.02 while c.status(handle).known? }
    end
    refute c.status("H:no-such-host:424242").known?
  end

  def test_status_unique
    f = fname("su")
    c = client
    c.submit_background(f, "x", unique: "su-#{f}")
    st = c.status_unique("su-#{f}")
    assert st.known?
    refute st.running?
    refute c.status_unique("nobody-#{f}").known?
    on(f) { |_job| "" }
    with_worker { within(10) { sleep 0.02 while c.status_unique("su-#{f}").known? } }
  end

  def test_priorities_are_respected
    f = fname("prio")
    c = client
    %i[low normal high].each { |p| c.submit_background(f, p.to_s, priority: p) }
    c.submit_background(f, "high2", priority: "high")
    order = Queue.new
    on(f) do |job|
      order << job.data
      ""
    end
    with_worker(concurrency: 1) do
      got = within(10) { Array.new(4) { order.pop } }
      assert_equal %w[high high2 normal low], got
    end
  end

  def test_scheduled_background_job_is_accepted
    f = fname("epoch")
    handle = client.submit_background(f, "later", at: Time.now + 3600)
    assert_match(/\AH:/, handle)
  end

  def test_job_timeout
    c = client
    t0 = monotonic
    assert_raises(Polygear::TimeoutError) { c.submit(fname("nobody"), "x", timeout: 0.3) }
    assert_operator monotonic - t0, :<, 5
    short = Polygear::Client.new(servers: [server.address], timeout: 0.3)
    assert_raises(Polygear::TimeoutError) { short.submit(fname("nobody"), "x") }
    short.close
  end

  def test_echo
    assert_equal "ping\x00\xFF".b, client.echo("ping\x00\xFF".b)
  end

  def test_concurrency_runs_blocks_on_separate_ruby_threads
    lock = Mutex.new
    active = 0
    max_active = 0
    threads = []
    f = on(fname("conc")) do |job|
      lock.synchronize do
        active += 1
        max_active = [max_active, active].max
        threads << Thread.current
      end
      deadline = monotonic + 5
      sleep 0.01 until lock.synchronize { active } >= 3 || monotonic > deadline
      sleep 0.05
      lock.synchronize { active -= 1 }
      "r#{job.data}"
    end
    with_worker(concurrency: 3) do |worker|
      assert_equal 3, worker.concurrency
      c = client
      results = within(20) { Array.new(6) { |i| Thread.new { c.submit(f, i.to_s) } }.map(&:value) }
      assert_equal (0..5).map { |i| "r#{i}" }, results
    end
    assert_equal 3, max_active
    assert_operator threads.uniq.size, :>=, 3
    refute_includes threads, Thread.main
  end

  def test_stop_with_jobs_running_lets_them_finish
    started = Queue.new
    f = on(fname("slow")) do |_job|
      started << true
      sleep 0.5
      "finished"
    end
    c = client
    with_worker do |worker, thread|
      submitter = Thread.new { c.submit(f, "x") }
      within(10) { started.pop }
      worker.stop
      assert worker.stopped?
      assert thread.join(10), "work did not return after stop"
      assert_equal 1, thread.value
      assert_equal "finished", submitter.value
      # a stopped worker takes no new jobs
      assert_raises(Polygear::TimeoutError) { c.submit(f, "y", timeout: 0.5) }
      assert_raises(Polygear::ClosedError) { worker.work }
    end
  end

  def test_stop_from_inside_a_block
    f = on(fname("selfstop")) do |job|
      @stop_worker.stop
      job.data.upcase
    end
    with_worker do |worker, thread|
      @stop_worker = worker
      assert_equal "ABC", client.submit(f, "abc")
      assert thread.join(10)
    end
  end

  def test_other_ruby_threads_run_while_submit_waits
    ticks = 0
    running = true
    ticker = Thread.new do
      while running
        ticks += 1
        sleep 0.01
      end
    end
    sleep 0.05
    before = ticks
    assert_raises(Polygear::TimeoutError) { client.submit(fname("nobody"), "x", timeout: 0.8) }
    during = ticks - before
    running = false
    ticker.join
    assert_operator during, :>=, 15, "the ticker thread only ran #{during} times during an 0.8 s submit"
  end

  def test_submit_is_interruptible
    c = client
    t0 = monotonic
    assert_raises(Timeout::Error) { Timeout.timeout(0.3) { c.submit(fname("nobody"), "x") } }
    assert_operator monotonic - t0, :<, 3
    t = Thread.new { c.submit(fname("nobody"), "x") }
    sleep 0.2
    t.kill
    assert t.join(3), "killed thread still blocked in submit"
    # the client still works afterwards
    assert_equal "ok", c.echo("ok")
  end

  def test_wrong_types_raise_type_error
    c = client
    assert_raises(TypeError) { c.submit(123, "x") }
    assert_raises(TypeError) { c.submit("f", 123) }
    assert_raises(TypeError) { c.submit("f", nil) }
    assert_raises(TypeError) { c.submit("f", "x", unique: 5) }
    assert_raises(TypeError) { c.submit("f", "x", priority: 5) }
    assert_raises(ArgumentError) { c.submit("f", "x", priority: :urgent) }
    assert_raises(TypeError) { c.submit("f", "x", timeout: "1") }
    assert_raises(ArgumentError) { c.submit("f", "x", timeout: -1) }
    assert_raises(TypeError) { c.submit_background(:f, "x") }
    assert_raises(TypeError) { c.submit_background("f", "x", at: "tomorrow") }
    assert_raises(TypeError) { c.status(42) }
    assert_raises(TypeError) { c.echo(42) }
    assert_raises(TypeError) { Polygear::Client.new(servers: 5) }
    assert_raises(TypeError) { Polygear::Client.new(servers: [:x]) }
    assert_raises(ArgumentError) { Polygear::Client.new(servers: []) }
    assert_raises(ArgumentError) { Polygear::Client.new(servers: ["host:notaport"]) }
    assert_raises(TypeError) { Polygear::Worker.new(servers: [server.address], concurrency: "2") }
    assert_raises(ArgumentError) { Polygear::Worker.new(servers: [server.address], concurrency: 0) }
    w = Polygear::Worker.new(servers: [server.address])
    assert_raises(TypeError) { w.register(:sym) { nil } }
    assert_raises(ArgumentError) { w.register("f") }
    assert_raises(TypeError) { w.register("f", timeout: "5") { nil } }
    assert_raises(ArgumentError) { w.work }
    assert_raises(TypeError) { Polygear::Admin.new(42) }
    assert_raises(TypeError) { Polygear::Server.new(port: "x") }
  end

  def test_wrong_types_inside_a_job_reach_the_client
    f = on(fname("badjob")) do |job|
      job.send_status("a", 1)
      "unreachable"
    end
    g = on(fname("badjob2")) do |job|
      job.send_data(42)
    end
    h = on(fname("badresult")) { |_job| Object.new }
    broken = Class.new(StandardError) { def message = raise("no message") }
    k = on(fname("badmessage")) { |_job| raise broken }
    with_worker do |_worker, thread|
      assert_raises(Polygear::JobException) { client.submit(k, "x") }
      err = assert_raises(Polygear::JobException) { client.submit(f, "x") }
      assert_match(/no implicit conversion|String|Integer/, err.worker_message)
      assert_raises(Polygear::JobException) { client.submit(g, "x") }
      err = assert_raises(Polygear::JobException) { client.submit(h, "x") }
      assert_match(/worker block returned Object; return a String or nil/, err.worker_message)
      assert thread.alive?, "a bad result stopped the worker"
    end
  end

  def test_finished_job_rejects_updates
    kept = Queue.new
    f = on(fname("keep")) do |job|
      kept << job
      "ok"
    end
    with_worker do
      assert_equal "ok", client.submit(f, "x")
      job = within(5) { kept.pop }
      within(5) { sleep 0.01 until job.finished? }
      assert_raises(Polygear::ClosedError) { job.send_data("late") }
      assert_match(/Polygear::Job/, job.inspect)
    end
  end

  def test_dead_server_raises_connection_error_quickly
    port = PolygearTest.free_port
    c = Polygear::Client.new(servers: ["127.0.0.1:#{port}"], connect_timeout: 2)
    t0 = monotonic
    assert_raises(Polygear::ConnectionError) { c.submit("f", "x") }
    assert_raises(Polygear::ConnectionError) { c.submit_background("f", "x") }
    assert_raises(Polygear::ConnectionError) { c.status("H:x:1") }
    assert_operator monotonic - t0, :<, 5
    t0 = monotonic
    assert_raises(Polygear::ConnectionError) { Polygear::Admin.new("127.0.0.1:#{port}", timeout: 2) }
    assert_operator monotonic - t0, :<, 3
    c.close
  end

  def test_close_ends_waiting_submits_with_closed_error
    c = Polygear::Client.new(servers: [server.address])
    assert_equal "x", c.echo("x")
    waiter = Thread.new { c.submit(fname("nobody"), "x", timeout: 10) }
    waiter.report_on_exception = false
    sleep 0.3
    c.close
    assert_raises(Polygear::ClosedError) { waiter.join(5) or flunk("submit still waiting after close") }
  end

  # --- Admin -----------------------------------------------------------

  def test_admin_status_workers_and_version
    f = on(fname("adm")) { |_job| "" }
    with_worker(client_id: "rb-admin-test") do
      Polygear::Admin.open(server.address) do |admin|
        row = nil
        within(10) { sleep 0.05 until (row = admin.status.find { |s| s.function == f }) && row.workers >= 1 }
        assert_instance_of Polygear::Admin::FunctionStatus, row
        assert_equal 0, row.total
        me = admin.workers.find { |w| w.client_id == "rb-admin-test" }
        refute_nil me, "our worker is listed by `workers`"
        assert_includes me.functions, f
        prio = admin.priority_status.find { |s| s.function == f }
        assert_equal [0, 0, 0], [prio.high, prio.normal, prio.low]
        assert_kind_of String, admin.version
        refute_empty admin.version
        assert_kind_of Integer, admin.getpid
        assert_operator admin.getpid, :>, 0
        assert_kind_of String, admin.verbose
        assert_match(/\S/, admin.raw("version"))
      end
    end
  end

  def test_admin_jobs_cancel_and_queue_limits
    f = fname("admq")
    c = client
    Polygear::Admin.open(server.address, timeout: 5) do |admin|
      handle = c.submit_background(f, "queued", unique: "q-#{f}")
      job = admin.show_jobs.find { |j| j.handle == handle }
      refute_nil job
      assert_instance_of Polygear::Admin::JobInfo, job
      assert_includes admin.show_unique_jobs, "q-#{f}"
      assert_equal 1, admin.status.find { |s| s.function == f }.total
      admin.cancel_job(handle)
      err = assert_raises(Polygear::ServerError) { admin.cancel_job("H:no-such-job:#{rand(1 << 30)}") }
      refute_nil err.code

      g = fname("admmax")
      c.submit_background(g, "1")
      admin.maxqueue(g, 1)
      err = assert_raises(Polygear::ServerError) { c.submit_background(g, "2") }
      refute_nil err.code
      admin.maxqueue(g)
      c.submit_background(g, "3")
      assert_equal 2, admin.status.find { |s| s.function == g }.total

      h = fname("admfn")
      admin.create_function(h)
      assert(admin.status.any? { |s| s.function == h })
      admin.drop_function(h)
      refute(admin.status.any? { |s| s.function == h })
    end
    admin = Polygear::Admin.new(server.address)
    admin.close
    assert_raises(Polygear::ClosedError) { admin.version }
  end
end
