# frozen_string_literal: true

module Polygear
  # gearmand's admin text protocol (what `gearadmin` speaks) on one server.
  #
  #   Polygear::Admin.open("127.0.0.1:4730") do |admin|
  #     admin.status.each { |s| puts "#{s.function}: #{s.total} queued, #{s.workers} workers" }
  #     admin.version   # => "1.1.20"
  #   end
  class Admin
    # A `status` row: jobs queued+running, running, registered workers.
    FunctionStatus = Struct.new(:function, :total, :running, :workers)
    # A `prioritystatus` row: waiting jobs per priority.
    PriorityStatus = Struct.new(:function, :high, :normal, :low, :workers)
    # A `workers` row: connection number, peer address, client id, functions.
    WorkerInfo = Struct.new(:fd, :ip, :client_id, :functions)
    # A `show jobs` row.
    JobInfo = Struct.new(:handle, :retries, :ignore, :queued)
    # A `retry list` row (polygeard): runs in all (the first included) and
    # the delays in seconds (Float): +backoff+ after the first failure,
    # doubled after each further one, capped at +max_delay+.
    RetryPolicy = Struct.new(:function, :max_attempts, :backoff, :max_delay)
    # A `dead list` row (polygeard): a background job whose attempts ran
    # out. +unique+ and +data+ are binary Strings, +error+ the last
    # exception text or the server's reason, +submitted+ / +failed_at+ Times.
    DeadJob = Struct.new(:handle, :function, :unique, :data, :attempts, :error, :submitted, :failed_at)
    # A `drain` row (polygeard): a worker connection being drained.
    DrainingWorker = Struct.new(:fd, :client_id)
    # A `schedule list` row (polygeard): +last_fired+ / +next+ are Times or nil.
    Schedule = Struct.new(:name, :function, :cron, :last_fired, :next, :data)

    # Connects to +server+ ("host:port"); every call raises TimeoutError
    # after +timeout+ seconds. +tls+: as for Client.new.
    def initialize(server = DEFAULT_SERVERS.first, timeout: 5, tls: nil)
      Util.string(server, "server")
      @native = Native::Admin.connect(server, Util.seconds(timeout), Util.tls(tls))
    end

    # Like new, but with a block: yields the admin and closes it afterwards.
    def self.open(server = DEFAULT_SERVERS.first, timeout: 5, tls: nil)
      admin = new(server, timeout: timeout, tls: tls)
      return admin unless block_given?

      begin
        yield admin
      ensure
        admin.close
      end
    end

    # `status`: Array of FunctionStatus.
    def status = @native.status.map { |r| FunctionStatus.new(*r) }

    # `prioritystatus`: Array of PriorityStatus.
    def priority_status = @native.priority_status.map { |r| PriorityStatus.new(*r) }

    # `workers`: Array of WorkerInfo.
    def workers = @native.workers.map { |r| WorkerInfo.new(*r) }

    # `show jobs`: Array of JobInfo.
    def show_jobs = @native.show_jobs.map { |r| JobInfo.new(*r) }

    # `show unique jobs`: Array of unique keys.
    def show_unique_jobs = @native.show_unique_jobs

    # `version`: the server's version string.
    def version = @native.version

    # `getpid`: the server's process id.
    def getpid = @native.getpid

    # `verbose`: the server's log level name.
    def verbose = @native.verbose

    # `cancel job HANDLE` (queued jobs only); ServerError if unknown.
    def cancel_job(handle) = @native.cancel_job(Util.string(handle, "handle"))

    # `maxqueue FUNC [limits]`: +limits+ is nil (unlimited), one Integer,
    # or [high, normal, low].
    def maxqueue(function, limits = nil)
      Util.string(function, "function name")
      limits = [limits] if limits.is_a?(Integer)
      raise TypeError, "limits must be nil, an Integer or [high, normal, low]" unless limits.nil? || limits.is_a?(Array)

      @native.maxqueue(function, limits)
    end

    # `create function FUNC`.
    def create_function(function) = @native.create_function(Util.string(function, "function name"))

    # `drop function FUNC`.
    def drop_function(function) = @native.drop_function(Util.string(function, "function name"))

    # `shutdown` (or `shutdown graceful`).
    def shutdown(graceful: false) = @native.shutdown(graceful ? true : false)

    # --- polygeard extensions (gearmand answers ServerError, code UNKNOWN_COMMAND) ---

    # Retries failed background jobs of +function+: at most +max_attempts+
    # runs (the first included; 0 removes the policy), waiting +backoff+
    # seconds after the first failure, doubled after each further one, at
    # most +max_delay+ seconds (nil: 1 hour). Jobs whose runs are used up go
    # to the dead set (#dead_jobs).
    def set_retry_policy(function, max_attempts, backoff, max_delay = nil)
      Util.function_name(function)
      raise TypeError, "max_attempts must be an Integer, not #{max_attempts.class}" unless max_attempts.is_a?(Integer)
      raise ArgumentError, "max_attempts must be in 0..#{2**32 - 1}, not #{max_attempts}" unless max_attempts.between?(0, 2**32 - 1)

      @native.set_retry_policy(function, max_attempts, Util.required_seconds(backoff, "backoff"),
                               Util.seconds(max_delay, "max_delay"))
      nil
    end

    # Array of RetryPolicy, one per function that has one.
    def retry_policies = @native.retry_policies.map { |r| RetryPolicy.new(*r) }

    # The dead set (Array of DeadJob, oldest first); only +function+'s if given.
    def dead_jobs(function = nil)
      Util.opt_string(function, "function name")
      @native.dead_jobs(function).map do |r|
        DeadJob.new(*r[0, 6], Time.at(r[6]), Time.at(r[7]))
      end
    end

    # Requeues +function+'s dead jobs (with fresh attempts); returns how many.
    def retry_dead(function) = @native.retry_dead(Util.function_name(function))

    # Requeues the dead job +handle+; false if the dead set has no such job.
    def retry_dead_job(handle) = @native.retry_dead_job(Util.string(handle, "handle"))

    # Requeues every dead job; returns how many.
    def retry_all_dead = @native.retry_all_dead

    # Drops +function+'s dead jobs; returns how many.
    def delete_dead(function) = @native.delete_dead(Util.function_name(function))

    # Drops the dead job +handle+; false if there was none.
    def delete_dead_job(handle) = @native.delete_dead_job(Util.string(handle, "handle"))

    # Drops the whole dead set; returns how many.
    def delete_all_dead = @native.delete_all_dead

    # Keeps the results of +function+'s background jobs +seconds+ (0: off)
    # for Client#result.
    def set_retention(function, seconds)
      @native.set_retention(Util.function_name(function), Util.required_seconds(seconds, "seconds"))
      nil
    end

    # { function => seconds (Float) } of every retention setting.
    def retention = @native.retention.to_h

    # Coalesces jobs of +function+ with the same unique key for +seconds+
    # after the first one completed (0: off).
    def set_unique_window(function, seconds)
      @native.set_unique_window(Util.function_name(function), Util.required_seconds(seconds, "seconds"))
      nil
    end

    # { function => seconds (Float) } of every unique window.
    def unique_windows = @native.unique_windows.to_h

    # Hands out no more jobs of +function+ (queued ones wait, new ones queue).
    def pause(function)
      @native.pause(Util.function_name(function))
      nil
    end

    # Undoes #pause.
    def resume(function)
      @native.resume(Util.function_name(function))
      nil
    end

    # The paused function names.
    def paused = @native.paused

    # Drains worker connections: +id+ is a connection's fd (WorkerInfo#fd,
    # Integer or String) or a client id; they finish the jobs they hold and
    # get no new ones. Returns how many connections matched; none raises
    # ServerError (code UNKNOWN_WORKER).
    def drain_worker(id)
      raise TypeError, "id must be an Integer fd or a String, not #{id.class}" unless id.is_a?(Integer) || id.is_a?(String)

      @native.drain_worker(id.to_s)
    end

    # The draining worker connections (Array of DrainingWorker).
    def draining = @native.draining.map { |r| DrainingWorker.new(*r) }

    # Adds (or replaces) the periodic job +name+: at each occurrence of
    # +cron+ (UTC; 5 fields, 6 with seconds first, or @hourly, @daily...)
    # the server queues a background job of +function+ with +data+ and the
    # unique key "NAME@<unix time>". A refused cron raises ServerError
    # (code INVALID_SCHEDULE).
    def schedule_add(name, cron, function, data = nil)
      @native.schedule_add(Util.string(name, "schedule name"), Util.string(cron, "cron"),
                           Util.function_name(function), Util.opt_string(data, "data") || "")
      nil
    end

    # The periodic jobs (Array of Schedule), by name.
    def schedules
      @native.schedules.map do |r|
        Schedule.new(*r[0, 3], r[3] && Time.at(r[3]), r[4] && Time.at(r[4]), r[5])
      end
    end

    # Deletes the periodic job +name+; ServerError (code UNKNOWN_SCHEDULE) if none.
    def schedule_delete(name)
      @native.schedule_delete(Util.string(name, "schedule name"))
      nil
    end

    # Sends any admin command line; returns the raw reply text.
    def raw(command) = @native.raw(Util.string(command, "command"))

    # Closes the connection; later calls raise ClosedError.
    def close
      @native.close
      nil
    end
  end
end
