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
    # retry:: retry policies (polygeard's <tt>--retry</tt>): a Hash
    #         <tt>function => [max_attempts, backoff_seconds]</tt> or
    #         <tt>[max_attempts, backoff_seconds, max_delay_seconds]</tt>.
    # retain:: <tt>function => seconds</tt> (Integer) the results of its
    #          background jobs are kept (<tt>--retain</tt>).
    # unique_window:: <tt>function => seconds</tt> (Integer) of unique
    #                 windows (<tt>--unique-window</tt>).
    # schedules:: periodic jobs (<tt>--schedule</tt>): an Array of
    #             <tt>[name, cron, function]</tt> or <tt>[name, cron, function, data]</tt>.
    # Admin changes all of these at run time too.
    def initialize(port: 0, host: "127.0.0.1", tls: nil, retry: nil, retain: nil, unique_window: nil, schedules: nil)
      raise TypeError, "port must be an Integer, not #{port.class}" unless port.is_a?(Integer)
      raise ArgumentError, "port must be in 0..65535, not #{port}" unless (0..65_535).cover?(port)

      @host = Util.string(host, "host")
      ext = self.class.extensions(binding.local_variable_get(:retry), retain, unique_window, schedules)
      @native = Native::Server.start(host, port, self.class.tls(tls), ext)
    end

    # The #19 options -> [retry rows, retain rows, window rows, schedule rows] (internal).
    def self.extensions(retry_policies, retain, unique_window, schedules)
      retry_rows = hash_option(retry_policies, "retry").map do |function, policy|
        policy = Array(policy)
        unless policy.size.between?(2, 3) && policy[0].is_a?(Integer) && policy[1..].all?(Numeric)
          raise TypeError, "retry #{function}: [max_attempts, backoff_seconds(, max_delay_seconds)], not #{policy.inspect}"
        end
        raise ArgumentError, "retry #{function}: max_attempts must be >= 0" if policy[0].negative?

        [function, policy[0], policy[1].to_f, policy[2]&.to_f]
      end
      seconds = lambda do |option, value|
        hash_option(value, option).map do |function, secs|
          raise TypeError, "#{option} #{function}: seconds must be an Integer, not #{secs.class}" unless secs.is_a?(Integer)
          raise ArgumentError, "#{option} #{function}: seconds must be in 0..#{2**32 - 1}" unless secs.between?(0, 2**32 - 1)

          [function, secs]
        end
      end
      raise TypeError, "schedules must be an Array, not #{schedules.class}" unless schedules.nil? || schedules.is_a?(Array)

      schedule_rows = (schedules || []).map do |s|
        unless s.is_a?(Array) && s.size.between?(3, 4) && s.all?(String)
          raise TypeError, "each schedule must be [name, cron, function] or [name, cron, function, data] Strings"
        end

        [s[0], s[1], s[2], s[3] || ""]
      end
      [retry_rows, seconds.call("retain", retain), seconds.call("unique_window", unique_window), schedule_rows]
    end

    def self.hash_option(value, name) # :nodoc:
      return [] if value.nil?
      raise TypeError, "#{name} must be a Hash of function => setting, not #{value.class}" unless value.is_a?(Hash)

      value.map { |function, setting| [Util.function_name(function.to_s), setting] }
    end
    private_class_method :hash_option

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
    def self.start(port: 0, host: "127.0.0.1", tls: nil, **extensions)
      server = new(port: port, host: host, tls: tls, **extensions)
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
