# frozen_string_literal: true

module Polygear
  # The Rust job server (polygeard) running inside this Ruby process, on
  # its own threads. Handy for tests and single-host setups.
  #
  #   server = Polygear::Server.new            # a free port
  #   client = Polygear::Client.new(servers: [server.address])
  #   ...
  #   server.stop
  #
  #   Polygear::Server.start(port: 4730) { |s| run_app(s.address) }   # stops afterwards
  class Server
    # The address it was bound to (default "127.0.0.1"; "0.0.0.0" for all).
    attr_reader :host

    # Starts a server on +host+:+port+ (port 0: any free port); returns once
    # it accepts connections. Jobs are kept in memory.
    def initialize(port: 0, host: "127.0.0.1")
      raise TypeError, "port must be an Integer, not #{port.class}" unless port.is_a?(Integer)
      raise ArgumentError, "port must be in 0..65535" unless (0..65_535).cover?(port)

      @host = Util.string(host, "host")
      @native = Native::Server.start(host, port)
    end

    # Like new; with a block, yields the server and stops it afterwards.
    def self.start(port: 0, host: "127.0.0.1")
      server = new(port: port, host: host)
      return server unless block_given?

      begin
        yield server
      ensure
        server.stop
      end
    end

    # The TCP port it listens on.
    def port = @native.port

    # "HOST:PORT" to give Client/Worker servers: (127.0.0.1 when bound to all).
    def address = "#{host == '0.0.0.0' ? '127.0.0.1' : host}:#{port}"

    # True until #stop.
    def running? = @native.running?

    # Stops the server (idempotent).
    def stop
      @native.stop
      nil
    end
  end
end
