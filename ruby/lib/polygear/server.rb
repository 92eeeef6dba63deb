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

    # The keys of +tls:+.
    TLS_KEYS = %i[cert_file key_file ca_file verify_clients].freeze

    # Starts a server on +host+:+port+ (port 0: any free port); returns once
    # it accepts connections. Jobs are kept in memory.
    #
    # tls:: TLS on the port: a Hash +cert_file:+, +key_file:+ (the server's
    #       PEM certificate and key), +ca_file:+ (the CA that signs client
    #       certificates) and +verify_clients:+ (require one: mutual TLS).
    def initialize(port: 0, host: "127.0.0.1", tls: nil)
      raise TypeError, "port must be an Integer, not #{port.class}" unless port.is_a?(Integer)
      raise ArgumentError, "port must be in 0..65535, not #{port}" unless (0..65_535).cover?(port)

      @host = Util.string(host, "host")
      @native = Native::Server.start(host, port, self.class.tls(tls))
    end

    # +tls:+ -> nil or [cert_file, key_file, ca_file, verify_clients] (internal).
    def self.tls(value)
      return nil if value.nil?
      raise TypeError, "tls must be a Hash (#{TLS_KEYS.join(', ')}), not #{value.class}" unless value.is_a?(Hash)

      unknown = value.keys - TLS_KEYS
      raise ArgumentError, "unknown tls key(s) #{unknown.map(&:inspect).join(', ')}" unless unknown.empty?

      files = %i[cert_file key_file ca_file].map { |k| Util.tls_value(value[k], k) }
      raise ArgumentError, "tls needs cert_file and key_file" if files[0].nil? || files[1].nil?

      verify = value.fetch(:verify_clients, false)
      raise TypeError, "tls verify_clients must be true or false" unless [true, false].include?(verify)
      raise ArgumentError, "tls verify_clients needs ca_file" if verify && files[2].nil?

      files + [verify]
    end

    # Like new; with a block, yields the server and stops it afterwards.
    def self.start(port: 0, host: "127.0.0.1", tls: nil)
      server = new(port: port, host: host, tls: tls)
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
