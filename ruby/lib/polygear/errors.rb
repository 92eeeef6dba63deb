# frozen_string_literal: true

module Polygear
  # The classes are created by the native extension; this file documents
  # them and adds their readers.
  #
  #   Polygear::Error < StandardError
  #     ConnectionError  could not connect / connection lost / no server up
  #     TimeoutError     a deadline passed (connect, submit, job timeout)
  #     ProtocolError    the peer broke the wire protocol
  #     ServerError      the server answered with an ERROR packet (#code)
  #     JobFailed        the worker reported WORK_FAIL (#handle)
  #     JobException     the worker raised (#handle, #worker_message)
  #     ClosedError      used after close/stop, or a job that already ended
  #
  # Invalid arguments raise ArgumentError; wrong types raise TypeError.
  class Error < StandardError; end

  # Could not connect, the connection was lost, or no server is reachable.
  class ConnectionError < Error; end

  # An operation ran past its deadline.
  class TimeoutError < Error; end

  # The peer sent something that is not valid Gearman.
  class ProtocolError < Error; end

  # The server answered with an ERROR packet.
  class ServerError < Error
    # The server's error code, e.g. "QUEUE_ERROR".
    attr_reader :code
  end

  # The worker reported WORK_FAIL (or the server gave up on the job).
  class JobFailed < Error
    # The job handle.
    attr_reader :handle
  end

  # The worker raised an exception (WORK_EXCEPTION).
  class JobException < Error
    # The job handle.
    attr_reader :handle
    # The text the worker sent with WORK_EXCEPTION.
    attr_reader :worker_message
  end

  # The client, worker, admin connection or job was closed or has ended.
  class ClosedError < Error; end
end
