# frozen_string_literal: true

module Polygear
  # The Rust job server (polygeard) running inside this Ruby process, on
  # 127.0.0.1. Handy for tests and single-host setups.
  #
  #   server = Polygear::Server.new            # a free port
  #   client = Polygear::Client.new(servers: [server.address])
  #   ...
  #   server.stop
  #
  #   Polygear::Server.start(port: 4730) { |s| run_app(s.address) }   # stops afterwards
  class Server
    # Starts a server on +port+ (0: any free port).
    def initialize(port: 0)
      raise TypeError, "port must be an Integer, not #{port.class}" unless port.is_a?(Integer)
      raise ArgumentError, "port must be in 0..65535" unless (0..65_535).cover?(port)

      @native = Native::Server.start(port)
    end

    # Like new; with a block, yields the server and stops it afterwards.
    def self.start(port: 0)
      server = new(port: port)
      return server unless block_given?

      begin
        yield server
      ensure
        server.stop
      end
    end

    # The TCP port it listens on.
    def port = @native.port

    # "127.0.0.1:PORT", ready for Client/Worker servers:.
    def address = "127.0.0.1:#{port}"

    # True until #stop.
    def running? = @native.running?

    # Stops the server (idempotent).
    def stop
      @native.stop
      nil
    end
  end
end
