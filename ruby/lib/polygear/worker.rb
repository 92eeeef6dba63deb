# frozen_string_literal: true

require "logger"
require_relative "json_payload"

module Polygear
  # A job given to a Worker#register block (created by the worker).
  #
  #   job.data        # the workload (ASCII-8BIT String)
  #   job.handle      # the server's job handle
  #   job.unique      # the unique key ("" if none)
  #   job.function    # the function name
  #   job.send_data("partial output")      # WORK_DATA
  #   job.send_status(3, 10)               # WORK_STATUS 3/10
  #   job.send_warning("disk almost full") # WORK_WARNING
  #   job.cancelled?                       # asks the server (Client#cancel)
  #
  # #cancelled? asks the server whether it still has the job (one
  # GET_STATUS round trip, GVL released): true once the job was cancelled
  # (Client#cancel, admin) or the server gave up on it (its timeout). Poll
  # it every 0.1-1 s in a long job, not in a tight loop, and return once it
  # is true (the result is dropped anyway). gearmand only cancels queued
  # jobs, so there it stays false for a running one.
  class Job
    # gearman-ruby's name for #send_status; returns self.
    def report_status(numerator, denominator)
      send_status(numerator, denominator)
      self
    end

    # gearman-ruby's name for #send_warning; returns self.
    def report_warning(data)
      send_warning(data)
      self
    end

    def inspect
      "#<Polygear::Job #{function} #{handle} (#{data.bytesize} bytes)>"
    end
  end

  # A Gearman worker. Register blocks, then call #work, which blocks until
  # #stop is called (from another thread, a block, or on SIGINT/SIGTERM)
  # and then shuts down gracefully: no new jobs are taken, running blocks
  # finish and their results are sent.
  #
  #   worker = Polygear::Worker.new(servers: ["127.0.0.1:4730"], concurrency: 4)
  #   worker.register("reverse") { |job| job.data.reverse }
  #   worker.register("slow", timeout: 60) do |job|
  #     10.times { |i| job.send_status(i + 1, 10); sleep 1 }
  #     "done"
  #   end
  #   worker.work
  #
  # The block's return value is the result: a String is sent as is
  # (binary-safe), nil as an empty result; anything else fails the job with
  # a JobException naming its class (register with <tt>json: true</tt> to
  # return Hashes, Arrays, numbers...). If the block raises, the client gets
  # WORK_EXCEPTION with the exception's message (clients that did not ask
  # for exceptions see WORK_FAIL), and the worker logs the exception with
  # its backtrace and calls the #on_error hook. With +concurrency: N+, N
  # blocks run at the same time, each on its own Ruby thread.
  class Worker
    # Number of jobs run at the same time.
    attr_reader :concurrency

    # Where the worker logs (a Logger).
    attr_reader :logger

    # servers:: "host:port" strings; the worker serves all of them.
    # concurrency:: how many jobs run at once (Ruby threads).
    # client_id:: sent with SET_CLIENT_ID (shown by `gearadmin --workers`).
    # tls:: TLS towards the servers, as for Client.new.
    # connect_timeout:: seconds to establish a connection (default 5).
    # fail_fast:: when true, #work raises ConnectionError if no server can
    #             be reached at start (each server failed its first
    #             attempt), instead of retrying in the background.
    # logger:: a Logger for connection trouble (warn: a failed connect, its
    #          first attempt and every 10th; a lost connection), connects
    #          (info), exceptions raised by blocks (error) and signals
    #          (warn); default: <tt>Logger.new($stderr, level: Logger::WARN,
    #          progname: "polygear")</tt>.
    # on_error:: called as <tt>on_error.call(job, exception)</tt> after a
    #            block raised (see #on_error).
    def initialize(servers: DEFAULT_SERVERS, concurrency: 1, client_id: nil, tls: nil, connect_timeout: nil,
                   fail_fast: false, logger: nil, on_error: nil)
      raise TypeError, "concurrency must be an Integer, not #{concurrency.class}" unless concurrency.is_a?(Integer)
      raise ArgumentError, "concurrency must be at least 1" if concurrency < 1
      unless on_error.nil? || on_error.respond_to?(:call)
        raise TypeError, "on_error must respond to #call, not be a #{on_error.class}"
      end

      @concurrency = concurrency
      @fail_fast = fail_fast ? true : false
      @logger = logger || Logger.new($stderr, level: Logger::WARN, progname: "polygear")
      @on_error = on_error
      @native = Native::Worker.new(Util.servers(servers), concurrency, Util.opt_string(client_id, "client_id"),
                                   Util.tls(tls), Util.seconds(connect_timeout, "connect_timeout"))
      @handlers = {}
      @lock = Mutex.new
      @working = false
      @stop_timeout = nil
    end

    # Sets the hook called with <tt>(job, exception)</tt> after a block
    # raised (the exception is logged and sent to the client either way);
    # returns self. The hook runs on the job's thread; if it raises, that is
    # logged too.
    #
    #   worker.on_error { |job, e| Sentry.capture_exception(e, extra: { handle: job.handle }) }
    def on_error(&hook)
      raise ArgumentError, "on_error needs a block (or a callable)" unless hook

      @on_error = hook
      self
    end

    # Registers +name+ (CAN_DO, or CAN_DO_TIMEOUT when +timeout+ seconds
    # are given) with the block that runs its jobs. Returns self.
    #
    # With <tt>json: true</tt> the block gets the job's data decoded from
    # UTF-8 JSON and the job (<tt>{ |value, job| ... }</tt>), and its return
    # value is sent JSON-encoded (nil as +null+); data that is not JSON, or a
    # result JSON cannot encode, fails the job with a JobException.
    def register(name, timeout: nil, json: false, &block)
      Util.function_name(name)
      raise ArgumentError, "register needs a block" unless block

      secs = Util.seconds(timeout)
      previous = @lock.synchronize do
        @handlers[name].tap { @handlers[name] = [block, json ? true : false] }
      end
      begin
        @native.register(name, secs)
      rescue StandardError
        @lock.synchronize { previous ? @handlers[name] = previous : @handlers.delete(name) }
        raise
      end
      self
    end

    # gearman-ruby's name: registers +name+ with a block called as
    # <tt>{ |data, job| ... }</tt> (+timeout+ in seconds, positional). The
    # result rule is #register's: nil is an empty result (gearman-ruby
    # sent WORK_FAIL), a non-String fails the job (gearman-ruby sent #to_s).
    def add_ability(name, timeout = nil, &block)
      raise ArgumentError, "add_ability needs a block" unless block

      register(name, timeout: timeout) { |job| block.call(job.data, job) }
    end

    # Stops taking jobs for +name+ (CANT_DO).
    def unregister(name)
      Util.function_name(name)
      @native.unregister(name)
      @lock.synchronize { @handlers.delete(name) }
      self
    end

    # The registered function names.
    def functions
      @lock.synchronize { @handlers.keys }
    end

    # Processes jobs until #stop (or SIGINT/SIGTERM when called on the main
    # thread with +trap_signals+), then waits for running jobs and closes
    # the connections. Returns the number of jobs processed. An exception
    # that is not a StandardError (e.g. Interrupt) stops the worker and is
    # re-raised after the shutdown. With +fail_fast+, raises ConnectionError
    # (and stops) when no server can be reached at start.
    def work(trap_signals: true)
      raise ArgumentError, "register a function before calling work" if functions.empty?
      raise ClosedError, "the worker was stopped; create a new one" if @native.stopped?

      @lock.synchronize do
        raise "work is already running on another thread" if @working

        @working = true
      end
      @processed = 0
      events = start_event_log
      previous = trap_signals && Thread.current == Thread.main ? install_traps : {}
      threads = []
      begin
        @native.connect if @fail_fast
        threads = Array.new(@concurrency) { |i| Thread.new { run_loop(i) } }
        threads.each { |t| nil until t.join(0.1) || @stop_timeout }
      ensure
        @native.stop
        shut_down(threads)
        stop_event_log(events)
        previous.each { |sig, handler| Signal.trap(sig, handler || "SYSTEM_DEFAULT") }
        @lock.synchronize { @working = false }
      end
      @processed
    end

    # Graceful stop: take no new jobs; running blocks finish. Safe to call
    # from any thread, from a job block, or from a signal handler.
    #
    # With +timeout+ (seconds), #work waits at most that long for running
    # blocks; then it closes the connections, which hands the unfinished
    # jobs back to the server (it requeues them for another worker; they
    # are not failed), kills the threads still running their blocks (their
    # results would be dropped), logs how many were handed back and returns.
    def stop(timeout: nil)
      unless timeout.nil?
        secs = Util.seconds(timeout, "stop timeout")
        raise ArgumentError, "stop timeout must not be negative (seconds), not #{timeout}" if secs.negative? || secs.nan?

        @stop_timeout = secs
      end
      @native.stop
      nil
    end

    # True once #stop was called.
    def stopped?
      @native.stopped?
    end

    private

    # After #stop: waits for the job threads and closes the connections;
    # with a stop timeout, hands back the jobs still running after it.
    def shut_down(threads)
      timeout = @stop_timeout
      if timeout.nil?
        join_all(threads)
        return @native.shutdown
      end

      handed = @native.shutdown_timeout(timeout)
      if handed.positive?
        threads.each(&:kill)
        log(:warn) do
          jobs = handed == 1 ? "1 unfinished job" : "#{handed} unfinished jobs"
          "stop timeout of #{timeout} s passed: handed #{jobs} back to the server, which requeues " \
            "#{handed == 1 ? 'it' : 'them'} for another worker"
        end
      end
      join_all(threads)
    end

    # Joins every thread; the first error is already propagating, or the
    # thread was killed.
    def join_all(threads)
      threads.each do |t|
        t.join
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      end
      nil
    end

    # A failed connect is logged at warn for attempt 1 and every Nth.
    WARN_EVERY = 10

    # How long the event thread waits for an event before it checks whether
    # to stop (seconds).
    EVENT_POLL = 0.1

    # A Ruby thread that logs the native worker's connection events (they
    # are read with the GVL released; Ruby code never runs on tokio's
    # side). It is never interrupted: an interrupt could land between an
    # event leaving the channel and its log line, and lose it.
    def start_event_log
      @events_done = false
      Thread.new do
        Thread.current.name = "polygear-events"
        Thread.current.report_on_exception = false
        until @events_done
          ev = @native.next_event(EVENT_POLL)
          log_event(*ev) if ev
        end
        while (ev = @native.next_event(0))
          log_event(*ev)
        end
      end
    end

    def stop_event_log(thread)
      @events_done = true
      thread.join
    rescue StandardError
      nil # a broken logger; the worker has stopped anyway
    end

    def log_event(kind, message, attempt)
      level = case kind
              when :connect_failed then attempt == 1 || (attempt % WARN_EVERY).zero? ? :warn : :debug
              when :disconnected then :warn
              else :info
              end
      log(level) { message }
    end

    def install_traps
      %w[INT TERM].to_h do |sig|
        [sig, Signal.trap(sig) { stop_on_signal(sig) }]
      end
    end

    # SIGINT/SIGTERM: stop gracefully and say so (a Logger cannot be used
    # in a trap handler, which may not take locks: a thread logs).
    def stop_on_signal(sig)
      @native.stop
      Thread.new do
        log(:warn) { "received SIG#{sig}: finishing running jobs, taking no new ones" }
      end
    end

    def run_loop(_index)
      Thread.current.name = "polygear-worker"
      Thread.current.report_on_exception = false
      job = @native.next_job
      job = run_job(job) while job
    rescue Exception # rubocop:disable Lint/RescueException
      @native.stop # one broken thread stops the whole worker
      raise
    end

    # Runs +job+'s block, ends the job and returns the next job for this
    # thread (nil once the worker has stopped and nothing is left).
    def run_job(job)
      handler, json = @lock.synchronize do
        @processed += 1
        @handlers[job.function]
      end
      return finish(job) { job.__send__(:_fail) } if handler.nil?

      begin
        result = json ? json_result(handler, job) : result_bytes(handler.call(job))
      rescue StandardError => e
        report(job, e)
        message = message_of(e)
        return finish(job) { job.__send__(:_exception, message) }
      rescue Exception => e # rubocop:disable Lint/RescueException
        begin
          job.__send__(:_exception, "#{e.class}: #{message_of(e)}".b) unless job.finished?
        rescue Error
          nil # its connection is gone
        end
        raise
      end
      finish(job) { job.__send__(:_complete, result) }
    end

    # Runs a <tt>json: true</tt> block: decoded data in, encoded result out.
    def json_result(handler, job)
      value = JSONPayload.decode(job.data, "the data of job #{job.handle} for '#{job.function}'")
      JSONPayload.encode(handler.call(value, job), "the result of the '#{job.function}' block")
    end

    # Logs a block's exception with its backtrace and calls the hook.
    def report(job, error)
      log(:error) do
        trace = Array(error.backtrace).first(30).map { |l| "\n    #{l}" }.join
        "job #{job.handle} of '#{job.function}' raised #{error.class}: #{text_of(error)}#{trace}"
      end
      @on_error&.call(job, error)
    rescue StandardError => e
      log(:error) { "the on_error hook raised #{e.class}: #{text_of(e)}" }
    end

    # Logs without letting a broken logger stop the worker.
    def log(level, &message)
      @logger.public_send(level, &message)
    rescue StandardError
      nil
    end

    # Ends +job+ with the block (unless the job's block ended it already).
    # The next job is taken first if one is waiting: this thread then runs
    # it right away, with no hand-off to another thread. A job whose
    # connection is gone cannot be ended; the server gives it to another
    # worker, and this thread goes on.
    def finish(job)
      nxt = @native.try_next_job
      begin
        yield unless job.finished?
      rescue Error
        nil # ending a job fails only when its connection is gone
      rescue Exception # rubocop:disable Lint/RescueException
        # Not expected (the arguments are Strings already); the next job
        # must not stay counted as running, or shutdown would wait for it.
        nxt&.__send__(:_fail)
        raise
      end
      nxt || @native.next_job
    end

    # The exception's message as binary, whatever its #message does.
    def message_of(error)
      text = error.message
      (text.is_a?(String) ? text : error.class.name.to_s).b
    rescue StandardError
      error.class.name.to_s.b
    end

    # The exception's message as valid UTF-8, for the log.
    def text_of(error)
      message_of(error).force_encoding(Encoding::UTF_8).scrub
    end

    def result_bytes(result)
      case result
      when String then result
      when nil then ""
      else raise TypeError, "worker block returned #{result.class}; return a String or nil (or register with json: true)"
      end
    end
  end
end
