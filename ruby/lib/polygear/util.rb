# frozen_string_literal: true

module Polygear
  # The server used when none is given.
  DEFAULT_SERVERS = ["127.0.0.1:4730"].freeze

  # Argument checks shared by the wrappers (internal).
  module Util
    module_function

    # "h1:4730,h2" or ["h1:4730", "h2"] -> ["h1:4730", "h2"].
    def servers(value)
      list = value.is_a?(Array) ? value : [value]
      list.map do |s|
        raise TypeError, "server must be a String like \"host:port\", not #{s.class}" unless s.is_a?(String)

        s
      end.tap { |l| raise ArgumentError, "at least one server is required" if l.empty? }
    end

    # nil or a number of seconds -> Float or nil; the extension checks the
    # value (timeouts must be more than 0), with the same message in every
    # language.
    def seconds(value, name = "timeout")
      return nil if value.nil?
      raise TypeError, "#{name} must be a number of seconds or nil, not #{value.class}" unless value.is_a?(Numeric)

      value.to_f
    end

    # A number of seconds (not nil) -> Float; the extension checks the value.
    def required_seconds(value, name)
      raise TypeError, "#{name} must be a number of seconds, not #{value.class}" unless value.is_a?(Numeric)

      value.to_f
    end

    # Checks that +value+ is a String (no implicit conversion surprises).
    def string(value, name)
      raise TypeError, "#{name} must be a String, not #{value.class}" unless value.is_a?(String)

      value
    end

    # A non-empty String naming a Gearman function.
    def function_name(value)
      string(value, "function name")
      raise ArgumentError, "empty function name" if value.empty?

      value
    end

    # nil or a String.
    def opt_string(value, name)
      value.nil? ? nil : string(value, name)
    end

    # The keys of an explicit +tls:+ Hash.
    TLS_KEYS = %i[ca_file cert_file key_file server_name].freeze

    # +tls:+ -> nil (plain TCP) or [from_env, ca_file, cert_file, key_file,
    # server_name] for the extension. +true+: libgearman's variables
    # (GEARMAND_CA_CERTIFICATE, GEARMAN_CLIENT_PEM, GEARMAN_CLIENT_KEY); a
    # Hash: exactly the files it names (Strings or Pathnames).
    def tls(value)
      case value
      when nil, false then nil
      when true then [true, nil, nil, nil, nil]
      when Hash
        unknown = value.keys - TLS_KEYS
        unless unknown.empty?
          raise ArgumentError,
                "unknown tls key(s) #{unknown.map(&:inspect).join(', ')}; the keys are #{TLS_KEYS.join(', ')}"
        end

        [false] + TLS_KEYS.map { |k| tls_value(value[k], k) }
      else
        raise TypeError, "tls must be true, false, nil or a Hash (#{TLS_KEYS.join(', ')}), not #{value.class}"
      end
    end

    def tls_value(value, key)
      return nil if value.nil?
      return value.to_path if key != :server_name && value.respond_to?(:to_path)

      string(value, "tls #{key}")
    end
  end
end
