# frozen_string_literal: true

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
  # block form. +type+ is :data, :warning or :status; +data+ is the
  # (ASCII-8BIT) payload of :data/:warning; +numerator+ / +denominator+ the
  # progress of :status.
  JobEvent = Struct.new(:type, :data, :numerator, :denominator)

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

      job = @native.submit_job(*args, timeout)
      while (ev = job.next_event)
        case ev[0]
        when :complete then return ev[1]
        when :status then yield JobEvent.new(:status, nil, ev[1], ev[2])
        else yield JobEvent.new(ev[0], ev[1], nil, nil)
        end
      end
      raise ProtocolError, "job #{job.handle} ended without a result"
    end

    # Queues +func+ with +data+ as a background job and returns its handle
    # once the server accepted it. +at:+ (a Time or Unix seconds) schedules
    # it (SUBMIT_JOB_EPOCH; normal priority only).
    def submit_background(func, data, unique: nil, priority: :normal, at: nil)
      epoch = case at
              when nil then nil
              when Time then at.to_i
              when Integer then at
              else raise TypeError, "at: must be a Time or Integer, not #{at.class}"
              end
      @native.submit_background(*job_args(func, data, unique, priority), epoch)
    end

    # Submits a foreground job of +func+ for every String in +items+ at once
    # (pipelined over the connections) and returns the results in the same
    # order, e.g. <tt>client.submit_many("resize", images, priority: :high)</tt>.
    # After every job ended, raises the first failure (JobFailed,
    # JobException, TimeoutError, ...); with +return_exceptions: true+ the
    # exception objects take their jobs' places instead.
    def submit_many(func, items, priority: :normal, timeout: nil, return_exceptions: false)
      Util.string(func, "function name")
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
      Util.string(func, "function name")
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
