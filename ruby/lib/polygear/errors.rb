# frozen_string_literal: true

require "timeout"

module Polygear
  # Every polygear exception includes this module, so
  # <tt>rescue Polygear::Error</tt> catches them all, while each class
  # subclasses the Ruby exception it is a kind of, so generic rescues work
  # too (<tt>rescue Timeout::Error</tt>, <tt>rescue IOError</tt>):
  #
  #   Polygear::Error (module)
  #     ConnectionError < IOError          could not connect / connection lost / no server up / port in use
  #     TimeoutError    < Timeout::Error   a deadline passed (connect, submit, job timeout)
  #     ProtocolError   < StandardError    the peer broke the wire protocol (or a JSON result is not JSON)
  #     ServerError     < StandardError    the server answered with an ERROR packet
  #     JobFailed       < StandardError    the worker reported WORK_FAIL (#handle)
  #       JobCancelled  < JobFailed        the job was cancelled (Client#cancel, admin); code "ECANCELED"
  #     JobException    < StandardError    the worker raised (#handle, #worker_message)
  #     ClosedError     < StandardError    used after close/stop, or a job that already ended
  #
  # #code is the stable code shared with the Python and Node packages
  # ("ECONNREFUSED", "EADDRINUSE", "ETIMEDOUT", "EJOBFAILED", ...); for a
  # ServerError it is the server's own code (e.g. "QUEUE_ERROR").
  #
  # Invalid arguments raise ArgumentError; wrong types raise TypeError.
  # The native extension raises these classes (it looks them up by name).
  module Error
    # The stable error code (see above), or nil.
    attr_reader :code
  end

  # Could not connect, the connection was lost, no server is reachable, or
  # (Server.new) the port is in use. An IOError.
  class ConnectionError < IOError
    include Error
  end

  # An operation ran past its deadline (in seconds). A Timeout::Error.
  class TimeoutError < Timeout::Error
    include Error
  end

  # The peer sent something that is not valid Gearman.
  class ProtocolError < StandardError
    include Error
  end

  # The server answered with an ERROR packet; #code is the server's code.
  class ServerError < StandardError
    include Error
  end

  # The worker reported WORK_FAIL (or the server gave up on the job).
  class JobFailed < StandardError
    include Error
    # The job handle.
    attr_reader :handle
    # Why, when the server failed the job itself and said so (polygeard:
    # "the worker exceeded its 1 s timeout"); nil for a worker's WORK_FAIL.
    attr_reader :reason
  end

  # The job was cancelled by its submitter (Client#cancel) or an
  # administrator while this client waited for it. #code is "ECANCELED";
  # #reason the server's text (e.g. "cancelled by the submitter").
  class JobCancelled < JobFailed
  end

  # The worker raised an exception (WORK_EXCEPTION).
  class JobException < StandardError
    include Error
    # The job handle.
    attr_reader :handle
    # The text the worker sent with WORK_EXCEPTION.
    attr_reader :worker_message
  end

  # The client, worker, admin connection or job was closed or has ended.
  class ClosedError < StandardError
    include Error
  end
end
