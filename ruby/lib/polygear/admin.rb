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

    # Sends any admin command line; returns the raw reply text.
    def raw(command) = @native.raw(Util.string(command, "command"))

    # Closes the connection; later calls raise ClosedError.
    def close
      @native.close
      nil
    end
  end
end
