# frozen_string_literal: true

# A minimal plain-socket Gearman client and worker in pure Ruby, WRITTEN FOR
# THIS BENCHMARK as the baseline (rubygems.org is not reachable here, so the
# gearman-ruby gem could not be installed). It speaks just what the benchmark
# needs: SUBMIT_JOB / JOB_CREATED / WORK_COMPLETE for the client (one job at a
# time, or pipelined with a window), and CAN_DO / GRAB_JOB / NO_JOB /
# PRE_SLEEP / NOOP / JOB_ASSIGN / WORK_COMPLETE for the worker.
require "socket"

module PlainGearman
  REQ = "\0REQ".b
  CAN_DO = 1
  PRE_SLEEP = 4
  NOOP = 6
  SUBMIT_JOB = 7
  JOB_CREATED = 8
  GRAB_JOB = 9
  NO_JOB = 10
  JOB_ASSIGN = 11
  WORK_COMPLETE = 13
  WORK_FAIL = 14

  # One TCP connection speaking binary packets.
  class Conn
    def initialize(host, port)
      @sock = TCPSocket.new(host, port)
      @sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      @buf = "".b
    end

    def send_packet(type, *args)
      @sock.write(PlainGearman.packet(type, *args))
    end

    def write_raw(bytes) = @sock.write(bytes)

    # [type, body]
    def read_packet
      fill(12)
      _magic, type, len = @buf.byteslice(0, 12).unpack("a4NN")
      fill(12 + len)
      body = @buf.byteslice(12, len)
      @buf = @buf.byteslice(12 + len, @buf.bytesize - 12 - len)
      [type, body]
    end

    def close = @sock.close

    private

    def fill(n)
      @buf << @sock.readpartial(65_536) while @buf.bytesize < n
    end
  end

  def self.packet(type, *args)
    body = args.map(&:b).join("\0".b)
    REQ + [type, body.bytesize].pack("NN") + body
  end

  # Foreground jobs on one connection.
  class Client
    def initialize(host, port) = @conn = Conn.new(host, port)

    # One job: submit and wait for its result.
    def submit(func, data)
      @conn.send_packet(SUBMIT_JOB, func, "", data)
      handle = nil
      loop do
        type, body = @conn.read_packet
        case type
        when JOB_CREATED then handle = body
        when WORK_COMPLETE
          h, result = body.split("\0", 2)
          return result if h == handle
        when WORK_FAIL then raise "job failed"
        end
      end
    end

    # Many jobs, up to +window+ in flight at once; returns the results in order.
    def submit_many(func, datas, window)
      results = Array.new(datas.size)
      pending = [] # indices waiting for JOB_CREATED, in submission order
      by_handle = {}
      sent = done = 0
      while done < datas.size
        while sent < datas.size && sent - done < window
          @conn.send_packet(SUBMIT_JOB, func, "", datas[sent])
          pending << sent
          sent += 1
        end
        type, body = @conn.read_packet
        case type
        when JOB_CREATED then by_handle[body] = pending.shift
        when WORK_COMPLETE
          h, result = body.split("\0", 2)
          results[by_handle.delete(h)] = result
          done += 1
        when WORK_FAIL then raise "job failed"
        end
      end
      results
    end

    def close = @conn.close
  end

  # Serves one function, one job at a time; +handler+ returns the result.
  class Worker
    def initialize(host, port) = @conn = Conn.new(host, port)

    def work(func, &handler)
      @conn.send_packet(CAN_DO, func)
      loop do
        @conn.send_packet(GRAB_JOB)
        type, body = @conn.read_packet
        case type
        when JOB_ASSIGN
          handle, _func, data = body.split("\0", 3)
          @conn.send_packet(WORK_COMPLETE, handle, handler.call(data))
        when NO_JOB
          @conn.send_packet(PRE_SLEEP)
          type, = @conn.read_packet until type == NOOP
        end
      end
    end
  end
end
