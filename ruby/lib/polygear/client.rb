# frozen_string_literal: true

require_relative "json_payload"

module Polygear
  # Answer to Client#status: what the server knows about a job.
  #
  # +known+ / +running+ are booleans; +numerator+ / +denominator+ are the
  # last WORK_STATUS; +client_count+ is only set by Client#status_unique.
  JobStatus = Struct.new(:handle, :known, :running, :numerator, :denominator, :client_count) do
    # The server knows the job (queued or running).
    def known? = known

    # A worker is running it.
    def running? = running

    # Progress as a Float in 0.0..1.0, or nil when no status was reported.
    def progress
      denominator.to_i.zero? ? nil : numerator.to_f / denominator
    end
  end

  # Something a running foreground job reported, yielded by Client#submit's
  # block form and Client#submit_job. +type+ is :data, :warning, :status or
  # (only from submit_job) :complete; +data+ is the (ASCII-8BIT) payload of
  # :data/:warning/:complete; +numerator+ / +denominator+ the progress of
  # :status. A failed job raises JobFailed / JobException instead.
  JobEvent = Struct.new(:type, :data, :numerator, :denominator)

  # A submitted foreground job (Client#submit_job without a block): read its
  # events with #each / #next_event, or wait for #result.
  #
  #   job = client.submit_job("import", csv)
  #   job.handle                       # => "H:host:42"
  #   job.each { |ev| p ev }           # :data, :warning, :status, then :complete
  #   job.result                       # the result (also after #each)
  class RunningJob
    include Enumerable

    # The server's job handle.
    attr_reader :handle

    def initialize(native) # :nodoc:
      @native = native
      @handle = native.handle
      @result = nil
      @failure = nil
    end

    # The next JobEvent (waiting for it, GVL released), or nil once the job
    # has ended. Raises JobFailed / JobException when the job fails.
    def next_event
      raise @failure if @failure

      ev = @native.next_event
      return nil if ev.nil?
      return JobEvent.new(:status, nil, ev[1], ev[2]) if ev[0] == :status

      @result = ev[1] if ev[0] == :complete
      JobEvent.new(ev[0], ev[1], nil, nil)
    rescue Error => e
      @failure = e
      raise
    end

    # Yields every remaining event; returns self (an Enumerator without a block).
    def each
      return enum_for(:each) unless block_given?

      while (ev = next_event)
        yield ev
      end
      self
    end

    # Waits for the end of the job and returns its result (binary String);
    # raises JobFailed, JobException, TimeoutError, ConnectionError.
    def result
      each { nil }
      @result or raise ProtocolError, "job #{handle} ended without a result"
    end

    def inspect = "#<Polygear::RunningJob #{handle}>"
  end

  # A Gearman client: submits jobs and asks for their status. Thread-safe:
  # share one instance between threads; requests are pipelined over one
  # connection per server, and every wait releases the GVL.
  #
  #   client = Polygear::Client.new(servers: ["127.0.0.1:4730"], timeout: 30)
  #   client.submit("resize", File.binread("a.png"), priority: :high)
  #   client.submit("import", csv) { |ev| puts "#{ev.numerator}/#{ev.denominator}" if ev.type == :status }
  #   handle = client.submit_background("mail", payload)
  #   client.status(handle).running?
  class Client
    PRIORITIES = %i[high normal low].freeze

    # servers:: "host:port" strings (a String with commas works too);
    #           jobs with a unique key are routed by its stable hash.
    # timeout:: default whole-job deadline in seconds for #submit (nil: none).
    # connect_timeout:: seconds to establish a connection (default 5).
    # client_id:: sent with SET_CLIENT_ID.
    # exceptions:: ask for WORK_EXCEPTION messages (JobException); when false
    #              a worker's exception arrives as WORK_FAIL (JobFailed).
    # tls:: +true+ (TLS with libgearman's GEARMAND_CA_CERTIFICATE,
    #       GEARMAN_CLIENT_PEM, GEARMAN_CLIENT_KEY; else the system's CAs) or
    #       a Hash +ca_file:+, +cert_file:+, +key_file:+, +server_name:+ (only
    #       those files). An unreadable file raises ArgumentError naming it; a
    #       refused handshake raises ConnectionError with the reason.
    def initialize(servers: DEFAULT_SERVERS, timeout: nil, connect_timeout: nil, client_id: nil, exceptions: true,
                   tls: nil)
      @native = Native::Client.new(Util.servers(servers), Util.seconds(timeout),
                                   Util.seconds(connect_timeout, "connect_timeout"),
                                   Util.opt_string(client_id, "client_id"), exceptions ? true : false,
                                   Util.tls(tls))
    end

    # Like new; with a block, yields the client, closes it afterwards and
    # returns the block's value (as Admin.open):
    #
    #   Polygear::Client.open(servers: ["127.0.0.1:4730"]) { |c| c.submit("reverse", "abc") }
    def self.open(**options)
      client = new(**options)
      return client unless block_given?

      begin
        yield client
      ensure
        client.close
      end
    end

    # Runs +func+ on a worker with +data+ and returns its result (a binary
    # String). With a block, yields every WORK_DATA / WORK_WARNING /
    # WORK_STATUS as a Polygear::JobEvent before returning the result.
    #
    # unique:: coalescing key (jobs with the same function and key run once).
    # priority:: :high, :normal or :low.
    # timeout:: whole-job deadline in seconds (overrides the client's).
    #
    # Raises JobFailed, JobException, TimeoutError, ConnectionError.
    def submit(func, data, unique: nil, priority: :normal, timeout: nil)
      args = job_args(func, data, unique, priority)
      timeout = Util.seconds(timeout)
      return @native.submit(*args, timeout) unless block_given?

      job = RunningJob.new(@native.submit_job(*args, timeout))
      job.each { |ev| yield ev unless ev.type == :complete }
      job.result
    end

    # Submits a foreground job and returns once the server accepted it.
    # With a block, yields every Polygear::JobEvent (:data, :warning,
    # :status and finally :complete) and returns the result, raising as
    # #submit does; without one, returns a Polygear::RunningJob to read the
    # events from. Options as for #submit.
    #
    #   client.submit_job("import", csv) { |ev| puts ev.type }   # => the result
    def submit_job(func, data, unique: nil, priority: :normal, timeout: nil, &block)
      native = @native.submit_job(*job_args(func, data, unique, priority), Util.seconds(timeout))
      job = RunningJob.new(native)
      return job unless block

      job.each(&block)
      job.result
    end

    # JSON mode: sends +value+ as UTF-8 JSON and returns the worker's JSON
    # result decoded (objects as Hashes with String keys; null as nil).
    # Options and block as for #submit. For workers registered with
    # <tt>json: true</tt> in any of polygear's languages.
    #
    # Raises ArgumentError if +value+ cannot be encoded (e.g. NaN),
    # ProtocolError if the result is not JSON, and what #submit raises.
    def submit_json(func, value, **options, &block)
      Util.function_name(func)
      data = begin
        JSONPayload.encode(value, "the data for '#{func}'")
      rescue JSON::GeneratorError => e
        raise ArgumentError, e.message
      end
      result = submit(func, data, **options, &block)
      begin
        JSONPayload.decode(result, "the result of '#{func}'")
      rescue JSON::ParserError => e
        raise ProtocolError, "#{e.message} (is the worker registered with json: true?)"
      end
    end

    # Queues +func+ with +data+ as a background job and returns its handle
    # once the server accepted it. +at:+ (a Time or Unix seconds) schedules
    # it (SUBMIT_JOB_EPOCH; normal priority only). +retain:+ (seconds, more
    # than 0; polygeard only, rounded up to whole seconds) keeps the job's
    # result on the server that long for #result; a server that is not
    # polygeard raises ServerError and nothing is sent.
    def submit_background(func, data, unique: nil, priority: :normal, at: nil, retain: nil)
      epoch = case at
              when nil then nil
              when Time then at.to_i
              when Integer then at
              else raise TypeError, "at: must be a Time or Integer, not #{at.class}"
              end
      @native.submit_background(*job_args(func, data, unique, priority), epoch, Util.seconds(retain, "retain"))
    end

    # The retained result of background job +handle+ (see
    # <tt>submit_background(retain:)</tt> and Admin#set_retention): its
    # binary String once it completed, nil while it is queued or running
    # or when the server does not know it (never retained, expired). A job
    # that failed raises JobFailed (JobCancelled if cancelled), one that
    # raised JobException. polygeard only: other servers raise ServerError.
    def result(handle) = @native.result(Util.string(handle, "handle"))

    # Like #result without raising for the job's outcome: <tt>[state,
    # payload]</tt>, +state+ one of :complete, :queued, :running, :failed,
    # :exception, :unknown; +payload+ the result (:complete) or the
    # worker's message (:exception), else nil.
    def result_state(handle) = @native.result_state(Util.string(handle, "handle"))

    # Cancels job +handle+ (foreground or background, queued or running):
    # true if the server had it. Clients waiting for it raise JobCancelled;
    # a running job's worker sees Job#cancelled? turn true. Unknown
    # handles (finished, never existed) give false.
    def cancel(handle) = @native.cancel(Util.string(handle, "handle"))

    # Submits a foreground job of +func+ for every String in +items+ at once
    # (pipelined over the connections) and returns the results in the same
    # order, e.g. <tt>client.submit_many("resize", images, priority: :high)</tt>.
    # After every job ended, raises the first failure (JobFailed,
    # JobException, TimeoutError, ...); with +return_exceptions: true+ the
    # exception objects take their jobs' places instead.
    def submit_many(func, items, priority: :normal, timeout: nil, return_exceptions: false)
      Util.function_name(func)
      raise TypeError, "items must be an Enumerable of Strings, not #{items.class}" unless items.respond_to?(:to_a)

      results = @native.submit_many(func, items.to_a, priority_symbol(priority), Util.seconds(timeout))
      return results if return_exceptions

      failure = results.find { |r| r.is_a?(Exception) }
      raise failure if failure

      results
    end

    # The status of a job handle (GET_STATUS) as a Polygear::JobStatus.
    def status(handle)
      JobStatus.new(*@native.status(Util.string(handle, "handle")))
    end

    # The status of a job by its unique key (GET_STATUS_UNIQUE).
    def status_unique(unique)
      JobStatus.new(*@native.status_unique(Util.string(unique, "unique")))
    end

    # ECHO round trip; returns +data+ as sent back by the server.
    def echo(data)
      @native.echo(Util.string(data, "data"))
    end

    # Closes all connections; jobs still waiting raise ClosedError.
    def close
      @native.close
      nil
    end

    private

    def job_args(func, data, unique, priority)
      Util.function_name(func)
      Util.string(data, "data")
      Util.opt_string(unique, "unique")
      [func, data, unique, priority_symbol(priority)]
    end

    def priority_symbol(priority)
      unless priority.is_a?(Symbol) || priority.is_a?(String)
        raise TypeError, "priority must be one of #{PRIORITIES.inspect}, not #{priority.class}"
      end
      raise ArgumentError, "unknown priority #{priority.inspect} (use #{PRIORITIES.inspect})" unless PRIORITIES.include?(priority.to_sym)

      priority.to_sym
    end
  end
end
